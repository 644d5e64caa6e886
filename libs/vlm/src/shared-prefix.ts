/**
 * Groups of token sequences that begin with the same tokens, so a causal model can run those tokens once and each
 * sequence only its own rest (the aligner's N candidates of one sentence share prompt + prefix + answer so far).
 */

/** Sequences `members` (indices into the input) all begin with the same `prefix` tokens; each has at least one more. */
export interface SharedPrefixGroup {
  members: number[];
  prefix: number;
}

function commonLength(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

function compare(a: readonly number[], b: readonly number[]): number {
  const n = commonLength(a, b);
  if (n < a.length && n < b.length) return a[n] - b[n];
  return a.length - b.length;
}

/**
 * Groups of two or more sequences sharing at least `minShared` leading tokens (the sequences not in any group are
 * left out). Sorted, sequences with long common prefixes are neighbours, and a run's common prefix is the least of
 * its neighbours' ones; a run grows while that stays at or above `minShared`. Each group's prefix is cut so every
 * member keeps at least one token of its own (the position its score is read at).
 */
export function sharedPrefixGroups(sequences: readonly (readonly number[])[], minShared: number): SharedPrefixGroup[] {
  // A sequence of minShared tokens or fewer cannot share minShared and keep one of its own.
  const order = sequences
    .map((_, i) => i)
    .filter((i) => sequences[i].length > minShared)
    .sort((a, b) => compare(sequences[a], sequences[b]) || a - b);
  const groups: SharedPrefixGroup[] = [];
  let run: number[] = [];
  let shared = Infinity;
  const close = () => {
    const prefix = Math.min(shared, ...run.map((i) => sequences[i].length - 1));
    if (run.length >= 2 && prefix >= minShared) groups.push({ members: [...run].sort((a, b) => a - b), prefix });
  };
  for (const i of order) {
    if (run.length === 0) {
      run = [i];
      shared = Infinity;
      continue;
    }
    const common = Math.min(shared, commonLength(sequences[run[run.length - 1]], sequences[i]));
    if (common >= minShared) {
      run.push(i);
      shared = common;
    } else {
      close();
      run = [i];
      shared = Infinity;
    }
  }
  if (run.length) close();
  return groups;
}
