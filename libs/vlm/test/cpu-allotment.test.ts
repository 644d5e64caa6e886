/**
 * The CPU allotment that sizes every session's intra-op pool (ORT_INTRA_OP_THREADS unset): the cgroup quota, capped
 * by the CPUs the scheduler allows. File contents are the kernel's formats, written out by hand; the thread count a
 * session really starts is counted in /proc.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuAllotment, cpusFromCgroupV1, cpusFromCgroupV2, executionFromEnv, type CpuSources } from '@libs/vlm';
import { openSession } from '../src/sessions';

const sources = (files: Record<string, string>, parallelism: number): CpuSources => ({ read: (path) => files[path], parallelism });
const V2 = '/sys/fs/cgroup/cpu.max';
const V1_QUOTA = '/sys/fs/cgroup/cpu/cpu.cfs_quota_us';
const V1_PERIOD = '/sys/fs/cgroup/cpu/cpu.cfs_period_us';

describe('cpu allotment', () => {
  it('reads cgroup v2 cpu.max and v1 CFS quota/period', () => {
    expect(cpusFromCgroupV2('200000 100000\n')).toBe(2);
    expect(cpusFromCgroupV2('150000 100000')).toBe(1.5);
    expect(cpusFromCgroupV2('max 100000\n')).toBeUndefined();
    expect(cpusFromCgroupV2(undefined)).toBeUndefined();
    expect(cpusFromCgroupV2('garbage')).toBeUndefined();
    expect(cpusFromCgroupV1('400000\n', '100000\n')).toBe(4);
    expect(cpusFromCgroupV1('-1\n', '100000\n')).toBeUndefined();
  });

  it('is the quota rounded down, at least 1, at most the CPUs the process may run on', () => {
    // A pod limited to 2 CPUs on a 64-core node: 2 threads, not 64.
    expect(cpuAllotment(sources({ [V2]: '200000 100000' }, 64))).toBe(2);
    expect(cpuAllotment(sources({ [V2]: '150000 100000' }, 64))).toBe(1);
    expect(cpuAllotment(sources({ [V2]: '50000 100000' }, 64))).toBe(1);
    expect(cpuAllotment(sources({ [V2]: '1600000 100000' }, 4))).toBe(4);
    expect(cpuAllotment(sources({ [V2]: 'max 100000' }, 8))).toBe(8);
    expect(cpuAllotment(sources({ [V1_QUOTA]: '300000', [V1_PERIOD]: '100000' }, 16))).toBe(3);
    expect(cpuAllotment(sources({}, 6))).toBe(6);
  });

  it('the thread count from the environment reaches onnxruntime: a session starts that many minus one pool threads', async () => {
    const threads = () => readdirSync('/proc/self/task').length;
    const model = join(__dirname, '../../../models/tiny-guard/onnx/model.onnx');
    // The first session of a process also starts one thread of onnxruntime's environment: open one before counting.
    await (await openSession(model, { intraOpNumThreads: 1 })).session.release();
    const started: number[] = [];
    for (const n of [4, 2]) {
      const before = threads();
      const { session } = await openSession(model, executionFromEnv({ ORT_INTRA_OP_THREADS: String(n) }));
      started.push(threads() - before);
      await session.release();
    }
    // The intra-op pool holds n - 1 threads besides the caller's.
    expect(started).toEqual([3, 1]);
  });
});
