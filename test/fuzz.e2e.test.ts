/**
 * Short form of `npm run bench -- fuzz` (same harness, test/harness/fuzz.ts): ~800 hostile requests across every
 * route and body type against the intake API as its own child process; no 5xx, and nothing enqueued that was
 * refused (every job in the queues and every verdict belongs to a 202 answered).
 */
import { describe, expect, it } from 'vitest';
import { formatFuzzReport, runFuzz } from './harness/fuzz';

describe('fuzz (short form)', () => {
  it('hostile requests: no 5xx, nothing enqueued that was refused, the admin dashboard closed without the key', async () => {
    const r = await runFuzz({ requests: 800, concurrency: 8, maxSeconds: 90, hugeCount: 2, log: () => undefined });
    const text = formatFuzzReport(r);
    console.log(text);
    expect(r.sent, text).toBeGreaterThanOrEqual(800);
    expect(r.fiveXx, text).toEqual({});
    expect(r.transportErrors, text).toEqual({});
    expect(r.enqueuedRefused, text).toEqual([]);
    expect(r.adminOpen, text).toEqual([]);
    expect(r.acceptedIds, text).toBeGreaterThan(0);
  }, 150_000);
});
