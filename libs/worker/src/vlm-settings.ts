import { EXECUTION_ENV } from '@libs/vlm';

/** Env variables of the VLM engine, read by every role that loads one (generator, aligner). */
export const VLM_ENV = {
  packDir: 'VLM_PACK_DIR',
  executionProviders: EXECUTION_ENV.providers,
  requireExecutionProvider: EXECUTION_ENV.require,
  intraOpThreads: EXECUTION_ENV.intraOpThreads,
} as const;

export const DEFAULT_VLM_PACK_DIR = 'models/factory-vlm';

/** EXECUTION_PROVIDERS, REQUIRE_EXECUTION_PROVIDER and ORT_INTRA_OP_THREADS, parsed once for every role (libs/vlm). */
export { executionFromEnv } from '@libs/vlm';
