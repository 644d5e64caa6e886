/** The JSONL sample files calibration and the detector read: one JSON object per non-empty line. */

/** The fields every sample line shares, checked the same way wherever samples are read. */
export interface SampleLine {
  raw: Record<string, unknown> & { prompt: string; label: 'safe' | 'unsafe'; image?: string };
  /** `<source>:<line>`, for messages. */
  where: string;
  /** 0-based line index. */
  index: number;
}

/**
 * Parses each non-empty line and checks `prompt` (non-empty string), `label` (safe | unsafe) and `image` (a path
 * when present); `fail` builds the caller's own error type from a message.
 */
export function readSampleLines(text: string, source: string, fail: (message: string) => Error): SampleLine[] {
  const lines: SampleLine[] = [];
  text.split(/\r?\n/).forEach((line, index) => {
    if (!line.trim()) return;
    const where = `${source}:${index + 1}`;
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(line);
    } catch (err) {
      throw fail(`${where}: not JSON (${(err as Error).message})`);
    }
    if (typeof raw.prompt !== 'string' || !raw.prompt.trim()) throw fail(`${where}: "prompt" must be a non-empty string`);
    if (raw.label !== 'safe' && raw.label !== 'unsafe') throw fail(`${where}: "label" must be "safe" or "unsafe"`);
    if (raw.image !== undefined && typeof raw.image !== 'string') throw fail(`${where}: "image" must be a path`);
    lines.push({ raw: raw as SampleLine['raw'], where, index });
  });
  return lines;
}
