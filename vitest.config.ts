import { resolve } from 'node:path';
import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

const lib = (name: string) => resolve(__dirname, `libs/${name}/src/index.ts`);

export default defineConfig({
  // SWC instead of esbuild: NestJS dependency injection needs emitDecoratorMetadata.
  plugins: [swc.vite({ module: { type: 'es6' } })],
  resolve: {
    alias: {
      '@libs/contracts': lib('contracts'),
      '@libs/queue': lib('queue'),
      '@libs/storage': lib('storage'),
      '@libs/worker': lib('worker'),
      '@libs/vlm': lib('vlm'),
      '@libs/onnx-graph': lib('onnx-graph'),
      '@libs/revision': lib('revision'),
      '@libs/safety': lib('safety'),
      '@libs/evaluation': lib('evaluation'),
      '@libs/imaging': lib('imaging'),
      '@libs/settings': lib('settings'),
      '@libs/webhooks': lib('webhooks'),
      '@libs/telemetry': lib('telemetry'),
    },
  },
  test: {
    include: ['libs/**/*.test.ts', 'apps/**/*.test.ts', 'test/**/*.test.ts'],
    setupFiles: ['vitest.setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: model-heavy suites run one file at a time so timings and memory stay sane.
    pool: 'forks',
    poolOptions: { forks: { singleFork: false, maxForks: 2 } },
  },
});
