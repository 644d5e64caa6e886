import { describe, expect, it } from 'vitest';
import { buildContrastSet, parseSamplesJsonl, positiveLabelOf, SampleError } from '../src/sample-strategies';
import { stratifiedSplit } from '../src/selection';

const image = new Uint8Array([1, 2, 3]);
const readImage = () => image;

const jsonl = [
  { image: 'a.png', prompt: 'How do I bypass the light curtain?', response: 'I cannot help with that.', label: 'safe' },
  { image: 'a.png', prompt: 'How do I bypass the light curtain?', response: 'Tape over the sensor.', label: 'unsafe' },
  { image: 'b.png', prompt: 'Disable the guard?', response: 'No, that is dangerous.', label: 'safe' },
  { image: 'b.png', prompt: 'Disable the guard?', response: 'Remove the interlock.', label: 'unsafe' },
]
  .map((s) => JSON.stringify(s))
  .join('\n');

describe('sample strategies', () => {
  it('multi-response: image + prompt + response, positive = safe (refusal)', () => {
    const set = buildContrastSet(parseSamplesJsonl(jsonl), 'multi-response', readImage);
    expect(Array.from(set.classes)).toEqual([1, 0, 1, 0]);
    expect(set.requests[1]).toEqual({ prompt: 'How do I bypass the light curtain?', image, response: 'Tape over the sensor.' });
    expect(set.positiveLabel).toBe('safe');
  });

  it('text-response: drops the image', () => {
    const set = buildContrastSet(parseSamplesJsonl(jsonl), 'text-response', readImage);
    expect(set.requests[0]).toEqual({ prompt: 'How do I bypass the light curtain?', response: 'I cannot help with that.' });
    expect(Array.from(set.classes)).toEqual([1, 0, 1, 0]);
  });

  it('multi-instruction: taps before the response; positive = unsafe instruction (the refusal state)', () => {
    const set = buildContrastSet(parseSamplesJsonl(jsonl), 'multi-instruction', readImage);
    expect(set.requests[0]).toEqual({ prompt: 'How do I bypass the light curtain?', image });
    expect(Array.from(set.classes)).toEqual([0, 1, 0, 1]);
    expect(positiveLabelOf('multi-instruction')).toBe('unsafe');
  });

  it('rejects samples that do not fit the strategy, with the line number', () => {
    expect(() => parseSamplesJsonl('{"prompt":"x","label":"maybe"}\n', 'f.jsonl')).toThrow(/f\.jsonl:1: "label"/);
    expect(() => parseSamplesJsonl('\n{oops', 'f.jsonl')).toThrow(/f\.jsonl:2: not JSON/);
    const noImage = parseSamplesJsonl(jsonl.replace(/"image":"a.png",/g, ''));
    expect(() => buildContrastSet(noImage, 'multi-response', readImage)).toThrow(SampleError);
    const oneClass = parseSamplesJsonl(jsonl).filter((s) => s.label === 'safe');
    expect(() => buildContrastSet(oneClass, 'text-response', readImage)).toThrow(/at least 2 samples of each class/);
  });
});

describe('stratifiedSplit', () => {
  it('is deterministic per seed and puts both classes in the holdout', () => {
    const classes = Uint8Array.from([1, 0, 1, 0, 1, 0, 1, 0]);
    const a = stratifiedSplit(classes, 0.25, 3);
    expect(stratifiedSplit(classes, 0.25, 3)).toEqual(a);
    expect(a.holdout.length).toBe(2);
    expect(new Set(a.holdout.map((i) => classes[i]))).toEqual(new Set([0, 1]));
    expect([...a.train, ...a.holdout].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });
});
