/** Small helpers shared by benchmarks: timing, medians, interleaved A/B runs. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

export async function timeMs(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/**
 * Runs each variant `rounds` times, interleaved (A B C A B C ...), so slow drift of a noisy machine hits all
 * variants alike; returns the median time of each.
 */
export async function interleaved(variants: Record<string, () => Promise<unknown>>, rounds: number): Promise<Record<string, number>> {
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  for (const fn of Object.values(variants)) await fn(); // warm-up
  for (let r = 0; r < rounds; r++) for (const [k, fn] of Object.entries(variants)) times[k].push(await timeMs(fn));
  return Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
}

export function argValue(argv: string[], name: string, fallback: string): string {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1] : fallback;
}
