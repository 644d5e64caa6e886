/**
 * Probes for the runtime benchmark's roofline, taken in the same run as the figures they bound: the copy bandwidth
 * of this machine from DRAM and at a given working-set size (a decoder small enough to stay in cache reads its
 * weights from there), and the FLOP/s onnxruntime's own MatMul reaches on the engine's thread count.
 */
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { DataType, encodeModel, GraphBuilder, seededRandom } from '@libs/onnx-graph';

/** Bytes read plus bytes written per second copying a `bytes`-sized buffer (repeated to ~1 GB moved), best of 5. */
export function copyBandwidth(bytes: number): number {
  const n = Math.max(1024, Math.floor(bytes / 4));
  const src = new Float32Array(n).fill(1);
  const dst = new Float32Array(n);
  const repeats = Math.max(1, Math.round(5e8 / (n * 4)));
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    // Always src into dst: an earlier version alternated with dst.set(dst), which copies nothing and doubled the figure.
    for (let i = 0; i < repeats; i++) dst.set(src);
    best = Math.min(best, performance.now() - t);
  }
  return (2 * n * 4 * repeats) / (best / 1000);
}

/** FLOP/s of one onnxruntime MatMul [m x k] x [k x n] with `threads` intra-op threads, best of 7 runs. */
export async function matmulFlops(threads: number, m = 256, k = 1024, n = 1024): Promise<number> {
  const g = new GraphBuilder();
  const rand = seededRandom(7);
  g.input('x', DataType.FLOAT, [m, k]);
  g.floats(
    'w',
    [k, n],
    Float32Array.from({ length: k * n }, () => rand(0.05)),
  );
  g.op('MatMul', ['x', 'w'], 'y');
  g.output('y_output_0', DataType.FLOAT, [m, n]);
  const session = await InferenceSession.create(encodeModel(g.model()), { intraOpNumThreads: threads, graphOptimizationLevel: 'all' });
  const x = new Tensor(
    'float32',
    Float32Array.from({ length: m * k }, () => rand(1)),
    [m, k],
  );
  let best = Infinity;
  for (let r = 0; r < 8; r++) {
    const t = performance.now();
    await session.run({ x });
    if (r > 0) best = Math.min(best, performance.now() - t);
  }
  await session.release();
  return (2 * m * k * n) / (best / 1000);
}
