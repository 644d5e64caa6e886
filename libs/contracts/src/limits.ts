import { z } from 'zod';
import { readSetting } from '@libs/settings';

export const IMAGE_FORMATS = ['png', 'jpeg', 'webp'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

/** Intake limits; every one has its own error code so clients can tell which they hit. */
export const LimitsSchema = z.object({
  maxImageBytes: z.number().int().positive(),
  /** Width x height from the header, checked before any decode: stops decompression bombs. */
  maxImagePixels: z.number().int().positive(),
  /**
   * Longest edge over shortest edge. Processors scale the short edge up to the model size, so a 100000x1 image
   * (a few hundred bytes of PNG) would otherwise cost gigabytes in every worker.
   */
  maxImageAspectRatio: z.number().positive(),
  imageFormats: z.array(z.enum(IMAGE_FORMATS)).min(1),
  maxPromptChars: z.number().int().positive(),
  maxAnswerChars: z.number().int().positive(),
  maxMetadataBytes: z.number().int().positive(),
  /** Nesting depth of any JSON body or metadata field (arrays and objects); deeper input is refused before it is walked. */
  maxJsonDepth: z.number().int().positive(),
  maxBatchItems: z.number().int().positive(),
  /** Whole HTTP body, JSON or multipart. */
  maxRequestBytes: z.number().int().positive(),
  /** Jobs waiting or running across the stage queues beyond which intake answers 429. */
  maxBacklog: z.number().int().positive(),
  retryAfterSeconds: z.number().int().positive(),
});
export type Limits = z.infer<typeof LimitsSchema>;

export const DEFAULT_LIMITS: Limits = {
  maxImageBytes: 8 * 1024 * 1024,
  maxImagePixels: 25_000_000,
  maxImageAspectRatio: 20,
  imageFormats: ['png', 'jpeg', 'webp'],
  maxPromptChars: 4000,
  maxAnswerChars: 16000,
  maxMetadataBytes: 4096,
  maxJsonDepth: 32,
  maxBatchItems: 500,
  maxRequestBytes: 64 * 1024 * 1024,
  maxBacklog: 10000,
  retryAfterSeconds: 30,
};

/** Env names of each limit, so manifests and docs can be checked against the code. */
export const LIMIT_ENV: Readonly<Record<Exclude<keyof Limits, 'imageFormats'>, string>> = {
  maxImageBytes: 'INTAKE_MAX_IMAGE_BYTES',
  maxImagePixels: 'INTAKE_MAX_IMAGE_PIXELS',
  maxImageAspectRatio: 'INTAKE_MAX_IMAGE_ASPECT_RATIO',
  maxPromptChars: 'INTAKE_MAX_PROMPT_CHARS',
  maxAnswerChars: 'INTAKE_MAX_ANSWER_CHARS',
  maxMetadataBytes: 'INTAKE_MAX_METADATA_BYTES',
  maxJsonDepth: 'INTAKE_MAX_JSON_DEPTH',
  maxBatchItems: 'INTAKE_MAX_BATCH_ITEMS',
  maxRequestBytes: 'INTAKE_MAX_REQUEST_BYTES',
  maxBacklog: 'INTAKE_MAX_BACKLOG',
  retryAfterSeconds: 'INTAKE_RETRY_AFTER_SECONDS',
};

export function limitsFromEnv(env: NodeJS.ProcessEnv = process.env, base: Limits = DEFAULT_LIMITS): Limits {
  const out: Record<string, unknown> = { ...base };
  for (const [key, name] of Object.entries(LIMIT_ENV)) {
    const value = readSetting<number>(env, name);
    if (value !== undefined) out[key] = value;
  }
  const formats = readSetting<string[]>(env, 'INTAKE_IMAGE_FORMATS');
  if (formats) out.imageFormats = formats;
  return LimitsSchema.parse(out);
}
