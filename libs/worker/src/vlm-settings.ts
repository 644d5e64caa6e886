/** Env variables of the VLM engine, read by every role that loads one (generator, aligner). */
export const VLM_ENV = {
  packDir: 'VLM_PACK_DIR',
  executionProviders: 'EXECUTION_PROVIDERS',
  intraOpThreads: 'ORT_INTRA_OP_THREADS',
} as const;

export const DEFAULT_VLM_PACK_DIR = 'models/factory-vlm';

export function executionProvidersFromEnv(env: NodeJS.ProcessEnv): string[] {
  return (env[VLM_ENV.executionProviders] || 'cpu').split(',').map((s) => s.trim()).filter(Boolean);
}
