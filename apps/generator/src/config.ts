/** Env variables of the generator role. */
export const GENERATOR_ENV = {
  packDir: 'VLM_PACK_DIR',
  executionProviders: 'EXECUTION_PROVIDERS',
  maxNewTokens: 'GENERATOR_MAX_NEW_TOKENS',
  intraOpThreads: 'ORT_INTRA_OP_THREADS',
} as const;

export const DEFAULT_VLM_PACK_DIR = 'models/factory-vlm';

export interface GeneratorConfig {
  packDir: string;
  executionProviders: string[];
  /** Undefined: the pack's generation_config decides. */
  maxNewTokens?: number;
  intraOpNumThreads?: number;
}

export const GENERATOR_CONFIG = Symbol('GENERATOR_CONFIG');

export function executionProvidersFromEnv(env: NodeJS.ProcessEnv): string[] {
  return (env[GENERATOR_ENV.executionProviders] || 'cpu').split(',').map((s) => s.trim()).filter(Boolean);
}

export function generatorConfigFromEnv(env: NodeJS.ProcessEnv = process.env): GeneratorConfig {
  const max = env[GENERATOR_ENV.maxNewTokens];
  const threads = env[GENERATOR_ENV.intraOpThreads];
  return {
    packDir: env[GENERATOR_ENV.packDir] || DEFAULT_VLM_PACK_DIR,
    executionProviders: executionProvidersFromEnv(env),
    maxNewTokens: max ? Number(max) : undefined,
    intraOpNumThreads: threads ? Number(threads) : undefined,
  };
}
