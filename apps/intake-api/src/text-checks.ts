/** Text checks of prompts and answers that stay linear and never copy the string. */

/**
 * True when `s` holds more than `limit` code points. A code point is one or two UTF-16 units, so a string longer
 * than 2 x limit is refused at once and a string no longer than the limit accepted at once; only the band between
 * is counted, without the array `[...s]` would build.
 */
export function codePointsOver(s: string, limit: number): boolean {
  if (s.length <= limit) return false;
  if (s.length > 2 * limit) return true;
  let count = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    if (++count > limit) return true;
  }
  return false;
}

/** No lone UTF-16 surrogate (which cannot be encoded as UTF-8). ES2024's String.prototype.isWellFormed, typed here. */
export function isWellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/**
 * U+FFFD, the replacement character: what busboy's UTF-8 decoder leaves where a multipart text field's bytes were not
 * UTF-8 (a UTF-8-encoded surrogate included). The bytes are gone by then, so a field holding one is refused as
 * undecodable text rather than passed to the model with the damage hidden.
 */
export function hasReplacementCharacter(s: string): boolean {
  return s.includes('\uFFFD');
}

/** True when any string in a parsed JSON value (keys included) holds a lone surrogate. Explicit stack, no recursion. */
export function hasIllFormedString(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node === 'string') {
      if (!isWellFormed(node)) return true;
    } else if (node !== null && typeof node === 'object') {
      if (Array.isArray(node)) stack.push(...node);
      else for (const [key, child] of Object.entries(node)) stack.push(key, child);
    }
  }
  return false;
}

/**
 * Nothing a reader would see: white space, control and format characters (zero-width space/joiners, word joiner,
 * BOM, soft hyphen), default-ignorable code points (Hangul fillers, variation selectors) and the Braille blank.
 */
const INVISIBLE = /^[\p{White_Space}\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}\u2800]*$/u;

export function isInvisible(s: string): boolean {
  return INVISIBLE.test(s);
}
