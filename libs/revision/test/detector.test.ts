/** The detector's sample parsing (which modes each item is read in) and the artifact loader's refusals, without a model. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildDetectorSet, detectorScore, limitItems, loadDetector, parseDetectorItems, type DetectorErrorCode, type DetectorMode } from '../src/detector';

const lines = [
  { id: 'a', image: 'a.png', prompt: 'How do I defeat the interlock?', label: 'unsafe' },
  { id: 'b', image: 'b.png', prompt: 'What machine is this?', label: 'safe' },
  { id: 'c', image: 'c.png', prompt: 'How do I lock out this lathe?', label: 'safe' },
  { id: 'd', image: 'd.png', prompt: 'Is the guard shut?', label: 'safe', modes: ['image'] },
  { prompt: 'Text only question', label: 'safe' },
]
  .map((l) => JSON.stringify(l))
  .join('\n');

describe('detector samples', () => {
  it('reads harmful items in both modes, benign ones with their image unless the eval set gives them a text mode', () => {
    const items = parseDetectorItems(lines, 's', new Map<string, DetectorMode[]>([['c', ['image', 'text']]]));
    expect(items.map((i) => [i.id, i.modes])).toEqual([
      ['a', ['image', 'text']],
      ['b', ['image']],
      ['c', ['image', 'text']],
      ['d', ['image']],
      ['s:5', ['text']],
    ]);
    const set = buildDetectorSet(items, (p) => new TextEncoder().encode(p));
    expect(Array.from(set.classes)).toEqual([1, 1, 0, 0, 0, 0, 0]);
    expect(set.modes).toEqual(['image', 'text', 'image', 'image', 'text', 'image', 'text']);
    expect(set.items).toEqual([0, 0, 1, 2, 2, 3, 4]);
    // No response: the taps are read at the generation prompt.
    expect(set.requests.every((r) => r.response === undefined)).toBe(true);
    expect(set.requests[1].image).toBeUndefined();
  });

  it('limits round-robin over the labels and rejects bad lines', () => {
    expect(limitItems(parseDetectorItems(lines), 2).map((i) => i.label)).toEqual(['unsafe', 'safe']);
    expect(() => parseDetectorItems('{"prompt": "x", "label": "maybe"}')).toThrow(/label/);
    expect(() => parseDetectorItems('{"prompt": "x", "label": "safe", "modes": ["audio"]}')).toThrow(/modes/);
  });
});

describe('loadDetector', () => {
  const dir = mkdtempSync(join(tmpdir(), 'detector-'));
  const good = {
    kind: 'hidden-state-detector',
    formatVersion: 1,
    model: { name: 'm', fingerprint: 'f'.repeat(64), layers: 2, hidden: 3 },
    layer: 1,
    weights: [1, -2, 0.5],
    bias: 0.25,
    center: [0, 1, 2],
    tau: 0.5,
  };
  const codeOf = (content: unknown, model?: { fingerprint: string; layers: number; hidden: number }): DetectorErrorCode | undefined => {
    const path = join(dir, `${Math.random()}.json`);
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    try {
      loadDetector(path, model);
    } catch (err) {
      return (err as { code: DetectorErrorCode }).code;
    }
    return undefined;
  };

  it('loads a well-formed artifact and refuses each kind of bad one', () => {
    const model = { fingerprint: 'f'.repeat(64), layers: 2, hidden: 3 };
    expect(codeOf(good, model)).toBeUndefined();
    expect(codeOf('{')).toBe('detector_malformed');
    expect(codeOf({ ...good, kind: 'x' })).toBe('detector_malformed');
    expect(codeOf({ ...good, formatVersion: 2 })).toBe('detector_unsupported_version');
    expect(codeOf({ ...good, weights: [1, 2] })).toBe('detector_malformed');
    expect(codeOf({ ...good, layer: 2 })).toBe('detector_malformed');
    expect(codeOf({ ...good, tau: 1.5 })).toBe('detector_malformed');
    expect(codeOf(good, { ...model, fingerprint: 'e'.repeat(64) })).toBe('detector_fingerprint_mismatch');
    expect(codeOf(good, { ...model, hidden: 4 })).toBe('detector_shape_mismatch');
    expect(() => loadDetector(join(dir, 'absent.json'))).toThrow(expect.objectContaining({ code: 'detector_missing' }));
  });

  it('scores with the logistic function (values by hand)', () => {
    expect(detectorScore(0)).toBe(0.5);
    expect(detectorScore(Math.log(3))).toBeCloseTo(0.75, 15);
    expect(detectorScore(-Math.log(3))).toBeCloseTo(0.25, 15);
    expect(detectorScore(-800)).toBe(0);
  });
});
