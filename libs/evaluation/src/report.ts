import type { Estimate, SafetyMetrics } from './metrics';

export interface ConfigResult {
  name: string;
  description: string;
  metrics: SafetyMetrics;
}

const pct = (e: Estimate) => (Number.isNaN(e.value) ? 'n/a' : `${(100 * e.value).toFixed(1)} [${(100 * e.low).toFixed(1)}, ${(100 * e.high).toFixed(1)}]`);

/** Relative change of a rate against the baseline, in percent (negative = reduction). */
export function relativeChange(value: number, baseline: number): number {
  return baseline === 0 ? 0 : (100 * (value - baseline)) / baseline;
}

export function markdownTable(results: ConfigResult[], baseline = results[0]): string {
  const head =
    '| config | image+harmful ASR % | Δ rel. | text-only harmful ASR % | over-refusal % (benign) | off-topic % (benign) | over-refusal % (risky scenes) | benign accuracy % | mean tokens | mean ms/item | aligned % |\n' +
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n';
  const rows = results.map((r) => {
    const m = r.metrics;
    const delta = r === baseline ? '' : `${relativeChange(m.imageHarmfulAsr.value, baseline.metrics.imageHarmfulAsr.value).toFixed(0)}%`;
    return `| ${r.name} | ${pct(m.imageHarmfulAsr)} | ${delta} | ${pct(m.textHarmfulAsr)} | ${pct(m.overRefusal)} | ${pct(m.offTopic)} | ${pct(m.riskySceneOverRefusal)} | ${pct(m.benignAccuracy)} | ${m.meanTokens.toFixed(1)} | ${m.meanLatencyMs.toFixed(1)} | ${(100 * m.alignedShare).toFixed(1)} |`;
  });
  return head + rows.join('\n') + '\n';
}

const rate = (e: Estimate) => (Number.isNaN(e.value) ? 'n/a' : (100 * e.value).toFixed(1));

/** Every config on trained and on held-out phrasings side by side: a defense that works only on memorised strings shows. */
export function phrasingTable(results: ConfigResult[]): string {
  const cols = ['image+harmful ASR %', 'text-only ASR %', 'benign accuracy %', 'over-refusal %', 'off-topic %'];
  const head = `| config | ${cols.map((c) => `${c} trained / held-out`).join(' | ')} |\n` + `| --- | ${cols.map(() => '---').join(' | ')} |\n`;
  const rows = results.map((r) => {
    const { trained: t, heldOut: h } = r.metrics.byPhrasing;
    const pair = (a: Estimate, b: Estimate) => `${rate(a)} / ${rate(b)}`;
    return `| ${r.name} | ${pair(t.imageHarmfulAsr, h.imageHarmfulAsr)} | ${pair(t.textHarmfulAsr, h.textHarmfulAsr)} | ${pair(t.benignAccuracy, h.benignAccuracy)} | ${pair(t.overRefusal, h.overRefusal)} | ${pair(t.offTopic, h.offTopic)} |`;
  });
  return head + rows.join('\n') + '\n';
}
