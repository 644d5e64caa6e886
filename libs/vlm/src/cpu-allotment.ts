import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/**
 * The CPUs this process may use: the cgroup's CPU quota (a pod's `limits.cpu`), else the CPUs it may be scheduled on.
 * onnxruntime sizes an unset intra-op pool to the host's physical cores, blind to the quota
 * (microsoft/onnxruntime#29510): a pod limited to 2 CPUs on a 64-core node runs 64 threads per session and is
 * throttled. So sessions get this many threads unless ORT_INTRA_OP_THREADS says otherwise.
 */
export function cpuAllotment(sources: CpuSources = systemCpuSources()): number {
  const quota =
    cpusFromCgroupV2(sources.read('/sys/fs/cgroup/cpu.max')) ??
    cpusFromCgroupV1(sources.read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us'), sources.read('/sys/fs/cgroup/cpu/cpu.cfs_period_us'));
  // A fractional quota rounds down (1.5 CPUs: 1 thread): more threads than the quota is what gets throttled.
  return Math.max(1, Math.min(sources.parallelism, quota === undefined ? sources.parallelism : Math.floor(quota)));
}

/** Where `cpuAllotment` reads from: cgroup files (undefined when absent) and the CPUs the scheduler allows. */
export interface CpuSources {
  read(path: string): string | undefined;
  parallelism: number;
}

export function systemCpuSources(): CpuSources {
  return {
    read: (path) => {
      try {
        return readFileSync(path, 'utf8');
      } catch {
        return undefined;
      }
    },
    parallelism: availableParallelism(),
  };
}

/** cgroup v2 `cpu.max`: "<quota> <period>" in microseconds, or "max <period>" (no limit). */
export function cpusFromCgroupV2(cpuMax: string | undefined): number | undefined {
  const [quota, period] = (cpuMax ?? '').trim().split(/\s+/);
  return ratio(quota, period);
}

/** cgroup v1 `cpu.cfs_quota_us` (-1: no limit) over `cpu.cfs_period_us`. */
export function cpusFromCgroupV1(quotaUs: string | undefined, periodUs: string | undefined): number | undefined {
  return ratio(quotaUs?.trim(), periodUs?.trim());
}

function ratio(quota: string | undefined, period: string | undefined): number | undefined {
  const q = Number(quota);
  const p = Number(period);
  return quota && period && Number.isFinite(q) && Number.isFinite(p) && q > 0 && p > 0 ? q / p : undefined;
}
