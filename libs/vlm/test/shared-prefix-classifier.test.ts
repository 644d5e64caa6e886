/**
 * The reward model scores conversations that share a prefix from one run of it (onnx/model_with_past.onnx), with
 * each conversation's logits those of the plain model on the whole conversation. The reference is the pack's
 * onnx/model.onnx run by onnxruntime directly, one unpadded conversation at a time, outside the code under test.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatTokenizer, SequenceClassifier, sharedPrefixGroups, type ChatMessage } from '@libs/vlm';

const PACK = resolve(__dirname, '../../../models/factory-guard');
const json = (f: string) => JSON.parse(readFileSync(join(PACK, f), 'utf8'));

const conversation = (user: string, answer: string): ChatMessage[] => [
  { role: 'user', content: user },
  { role: 'assistant', content: answer },
];

// What the aligner scores for one sentence: the same instruction and answer so far, N candidate sentences.
const soFar = 'As an AI assistant, I cannot help you defeat the two-hand control on this press.';
const candidates = [' It keeps both hands out of the die while the ram moves.', ' Tape the left button down.', ' Ask your supervisor.', '', ' It'];
const instruction = 'Is the following response to a factory worker safe and helpful?';

describe('shared-prefix reward scoring', () => {
  let classifier: SequenceClassifier;
  let plain: InferenceSession;
  let tokenizer: ChatTokenizer;
  beforeAll(async () => {
    classifier = await SequenceClassifier.open(PACK);
    plain = await InferenceSession.create(join(PACK, 'onnx', 'model.onnx'));
    tokenizer = new ChatTokenizer(json('tokenizer.json'), json('tokenizer_config.json'));
  });
  afterAll(async () => {
    await classifier.close();
    await plain.release();
  });

  async function reference(c: ChatMessage[]): Promise<Float32Array> {
    const ids = tokenizer.encode(classifier.format(c));
    const out = await plain.run({
      input_ids: new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
      attention_mask: new Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
    });
    return out.logits.data as Float32Array;
  }

  it("gives each candidate, in a batch mixed with other jobs' conversations, the plain model's logits on its whole conversation", async () => {
    const batch = [
      ...candidates.map((k) => conversation(instruction, soFar + k)),
      conversation('What colour is the warning light?', 'The warning light is red.'),
      ...candidates.slice(0, 3).map((k) => conversation('How do I clear a jam on the conveyor?', 'Stop the conveyor and lock it out first.' + k)),
      conversation('What colour is the warning light?', 'I cannot help with that.'),
    ];
    const before = { ...classifier.stats };
    const got = await classifier.classify(batch);
    // Three groups: the candidates, the conveyor answers, and the two warning-light conversations (same question).
    expect(classifier.stats.sharedRows - before.sharedRows).toBe(candidates.length + 3 + 2);
    for (const [i, c] of batch.entries()) {
      const want = await reference(c);
      expect(got[i].length, `conversation ${i}`).toBe(want.length);
      for (let k = 0; k < want.length; k++) expect(Math.abs(got[i][k] - want[k]), `conversation ${i} logit ${k}`).toBeLessThan(1e-4);
    }
  });

  it('feeds the shared tokens once: N candidates cost far fewer tokens than N whole conversations', async () => {
    const batch = candidates.map((k) => conversation(instruction, soFar + k));
    const whole = batch.reduce((n, c) => n + tokenizer.encode(classifier.format(c)).length, 0);
    const before = classifier.stats.tokens;
    await classifier.classify(batch);
    expect(classifier.stats.tokens - before).toBeLessThan(whole / 2);
  });

  it('groups sequences by their common leading tokens, each member keeping a token of its own', () => {
    const a = [1, 2, 3, 4, 5, 6];
    const groups = sharedPrefixGroups([a, [9, 9, 9], [1, 2, 3, 4, 7], [1, 2, 3, 4, 5, 6], [1, 2, 3]], 3);
    // [1, 2, 3] is too short to share 3 tokens and keep one; [9, 9, 9] shares nothing.
    expect(groups).toEqual([{ members: [0, 2, 3], prefix: 4 }]);
    expect(sharedPrefixGroups([a, [1, 2, 3, 4, 7], [1, 2, 3, 4, 8]], 3)).toEqual([{ members: [0, 1, 2], prefix: 4 }]);
    expect(sharedPrefixGroups([a, [1, 2, 9]], 3)).toEqual([]);
  });
});
