/**
 * The demo's client side of the batch API: the shipped sample batch (`batch.jsonl` beside its images) as one
 * multipart request, and polling a batch until it is done.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BatchStatus, Verdict, VerdictPage } from '@libs/contracts';

export interface SampleItem {
  image?: string;
  prompt: string;
  expect?: string;
  answer?: string;
}

export function readSampleBatch(dir: string): SampleItem[] {
  return readFileSync(join(dir, 'batch.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as SampleItem);
}

/** The sample batch as one multipart request: an `items` field and one file per item, named in `file`. */
export function sampleBatchForm(dir: string, items: SampleItem[]): FormData {
  const form = new FormData();
  form.append(
    'items',
    JSON.stringify(
      items.map((item, i) => ({
        prompt: item.prompt,
        answer: item.answer,
        metadata: { sample: item.image ?? null, expect: item.expect ?? null, supplied: item.answer !== undefined },
        file: item.image ? `image_${i}` : undefined,
      })),
    ),
  );
  items.forEach((item, i) => {
    if (item.image) form.append(`image_${i}`, new Blob([readFileSync(join(dir, item.image))], { type: 'image/png' }), item.image);
  });
  return form;
}

export async function pollBatch(url: string, apiKey: string, batchId: string, timeoutMs: number): Promise<Verdict[]> {
  const headers = { authorization: `Bearer ${apiKey}` };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = (await (await fetch(`${url}/v1/batches/${batchId}`, { headers })).json()) as BatchStatus;
    if (status.done) break;
    if (Date.now() > deadline) throw new Error(`batch ${batchId} not done after ${timeoutMs} ms: ${JSON.stringify(status.counts)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const verdicts: Verdict[] = [];
  let cursor: string | null = null;
  do {
    const page = (await (await fetch(`${url}/v1/batches/${batchId}/verdicts?limit=50${cursor ? `&cursor=${cursor}` : ''}`, { headers })).json()) as VerdictPage;
    verdicts.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return verdicts;
}
