/**
 * Every environment variable a role reads, in one table: its name, the zod schema its text must pass, its default,
 * what it means and which roles read it. Each process validates its whole environment against this table once, at
 * start-up (`loadSettings` / `exitOnInvalidSettings`), so a bad value stops the process with one message naming every
 * bad variable instead of failing later, in whichever reader meets it first. The readers of each lib
 * (`stageWorkerOptions`, `limitsFromEnv`, `etaConfigFromEnv`, ...) parse their values through `readSetting`, the same
 * schemas. docs/deploy.md's Configuration table is checked against this one (libs/settings/src/settings.test.ts).
 */
import { z } from 'zod';

export const ROLES = ['intake-api', 'generator', 'evaluator', 'aligner', 'notifier'] as const;
export type Role = (typeof ROLES)[number];
const WORKERS: Role[] = ['generator', 'evaluator', 'aligner'];
const ALL: Role[] = [...ROLES];

export interface Setting {
  name: string;
  /** Parses the variable's text (trimmed, never empty: an empty variable counts as unset). */
  schema: z.ZodType<unknown, string>;
  /** The text used when the variable is unset; undefined: unset is a value of its own (described in defaultNote). */
  default?: string;
  /** The default in words, where it is not one text (depends on the stage, a file's presence, the pack). */
  defaultNote?: string;
  description: string;
  roles: readonly Role[];
  /** Shown redacted by `modctl config`. */
  secret?: boolean;
  /** An empty variable is a value (e.g. no prefix), not unset. */
  allowEmpty?: boolean;
}

const SHA256 = /^[0-9a-fA-F]{64}$/;

const number = () => z.coerce.number<string>({ error: 'expected a number' });
const int = (min: number) => number().int({ error: 'expected an integer' }).min(min);
const positiveNumber = () => number().positive();
const finiteNumber = () => number().finite();
const text = () => z.string().min(1);
const bool = () => z.enum(['true', 'false', '1', '0'], { error: 'expected true or false' }).transform((v) => v === 'true' || v === '1');
const list = <T extends z.ZodType<unknown, string>>(item: T) =>
  z
    .string()
    .transform((s) =>
      s
        .split(',')
        .map((p) => p.trim().toLowerCase())
        .filter(Boolean),
    )
    .pipe(z.array(item).min(1));
const redisUrl = () =>
  z.string().refine((s) => {
    try {
      return ['redis:', 'rediss:'].includes(new URL(s).protocol);
    } catch {
      return false;
    }
  }, 'expected a redis:// or rediss:// URL');

const httpUrl = () =>
  z.string().refine((s) => {
    try {
      return ['http:', 'https:'].includes(new URL(s).protocol);
    } catch {
      return false;
    }
  }, 'expected an http:// or https:// URL');

const s = (setting: Setting): Setting => setting;

/** The roles that queue stage jobs (intake, generate -> evaluate, evaluate -> align) and so assign fair priorities. */
const FAIR_PRODUCERS: Role[] = ['intake-api', 'generator', 'evaluator'];
/** `tenantA=2,tenantB=0.5`: tenant names as API_KEYS spells them (case kept), weights from 0.1 to 12 (fairness.ts). */
const tenantWeights = () =>
  z.string().transform((raw, ctx) => {
    const weights: Record<string, number> = {};
    const parts = raw.split(',').map((p) => p.trim());
    for (const part of parts.filter(Boolean)) {
      const m = /^([^=\s]+)\s*=\s*(\d+(?:\.\d+)?)$/.exec(part);
      const weight = m ? Number(m[2]) : NaN;
      if (!m || !(weight >= 0.1 && weight <= 12)) {
        ctx.addIssue({ code: 'custom', message: `expected tenant=weight with a weight from 0.1 to 12, got "${part}"` });
        return z.NEVER;
      }
      weights[m[1]] = weight;
    }
    return weights;
  });

export const SETTINGS: readonly Setting[] = [
  // Queues and storage: every role.
  s({ name: 'REDIS_URL', schema: redisUrl(), default: 'redis://127.0.0.1:6379', description: 'queues and verdicts', roles: ALL, secret: true }),
  s({
    name: 'QUEUE_PREFIX',
    schema: z.string().regex(/\{[^}]+\}/, 'must contain a hash tag such as {mod}'),
    default: '{mod}',
    description: 'key prefix; must contain a hash tag',
    roles: ALL,
  }),
  s({ name: 'BLOB_DIR', schema: text(), default: 'var/blobs', description: 'blob store directory (shared volume)', roles: ALL }),
  s({
    name: 'VERDICT_RETENTION_SECONDS',
    schema: positiveNumber(),
    default: '2592000',
    description: 'how long verdicts, batches and idempotency keys live',
    roles: ALL,
  }),
  s({
    name: 'BLOB_GC_INTERVAL_SECONDS',
    schema: z.coerce.number<string>().min(0),
    default: '300',
    description: 'how often each intake replica deletes images whose last referencing verdict expired (0 disables)',
    roles: ['intake-api'],
  }),
  s({
    name: 'REDIS_COMMAND_TIMEOUT_MS',
    schema: positiveNumber(),
    default: '1000',
    description: "the intake's Redis command timeout (503 redis_unavailable past it)",
    roles: ['intake-api'],
  }),
  s({ name: 'JOB_ATTEMPTS', schema: int(1), default: '3', description: 'attempts per stage job', roles: ALL }),
  s({ name: 'JOB_BACKOFF_MS', schema: int(0), defaultNote: '5000 (evaluate 2000)', description: 'first retry delay, exponential', roles: ALL }),
  s({ name: 'JOB_KEEP_COMPLETED_SECONDS', schema: int(0), default: '3600', description: 'BullMQ retention of completed jobs', roles: ALL }),
  s({ name: 'JOB_KEEP_FAILED_SECONDS', schema: int(0), default: '604800', description: 'BullMQ retention of failed jobs', roles: ALL }),
  // Fair scheduling between tenants (libs/queue/src/fairness.ts): read by every role that queues stage jobs.
  s({
    name: 'FAIR_SCHEDULING',
    schema: bool(),
    default: 'true',
    description: "orders each stage's queue by start-time fair queuing between tenants (false: FIFO)",
    roles: FAIR_PRODUCERS,
  }),
  s({ name: 'FAIR_BURST_JOBS', schema: int(0).max(10000), default: '32', description: 'jobs an idle tenant may overtake, per stage', roles: FAIR_PRODUCERS }),
  s({
    name: 'FAIR_WEIGHTS',
    schema: tenantWeights(),
    defaultNote: 'every tenant 1',
    description: "tenant=weight,...: a tenant's share of each stage while others wait (0.1 to 12)",
    roles: FAIR_PRODUCERS,
  }),
  s({
    name: 'WORKER_LOCK_DURATION_MS',
    schema: int(1),
    defaultNote: '15000 GPU stages, 20000 evaluate',
    description: 'job lock; must exceed 1.25x the longest blocking model call',
    roles: WORKERS,
  }),
  s({ name: 'WORKER_STALLED_INTERVAL_MS', schema: int(1), default: '5000', description: 'stall checker period', roles: WORKERS }),
  s({ name: 'WORKER_MAX_STALLED_COUNT', schema: int(0), default: '2', description: 'stalls before a job fails', roles: WORKERS }),
  s({
    name: 'WORKER_CONCURRENCY',
    schema: int(1),
    defaultNote: 'generate: VLM_MAX_BATCH_SIZE, align: VLM_MAX_BATCH_SIZE / ALIGNER_N, evaluate: 16',
    description:
      'jobs per process (a GPU stage holds as many jobs as its engine batches rows; the evaluator batches the CLIP and reward calls of those it holds)',
    roles: WORKERS,
  }),
  s({
    name: 'GENERATE_WORKER_CONCURRENCY',
    schema: int(1),
    defaultNote: 'WORKER_CONCURRENCY',
    description: "the generator's jobs per process",
    roles: ['generator'],
  }),
  s({
    name: 'EVALUATE_WORKER_CONCURRENCY',
    schema: int(1),
    defaultNote: 'WORKER_CONCURRENCY',
    description: "the evaluator's jobs per process",
    roles: ['evaluator'],
  }),
  s({ name: 'ALIGN_WORKER_CONCURRENCY', schema: int(1), defaultNote: 'WORKER_CONCURRENCY', description: "the aligner's jobs per process", roles: ['aligner'] }),
  s({ name: 'HEALTH_PORT', schema: int(0).max(65535), default: '9464', description: 'probes and metrics (0 disables)', roles: [...WORKERS, 'notifier'] }),
  // Intake API.
  s({ name: 'PORT', schema: int(0).max(65535), default: '3000', description: 'HTTP port', roles: ['intake-api'] }),
  s({ name: 'HOST', schema: text(), default: '0.0.0.0', description: 'HTTP address', roles: ['intake-api'] }),
  s({
    name: 'API_KEYS',
    schema: list(z.string()).refine((entries) => entries.every((e) => /^[A-Za-z0-9_.-]{1,64}:[0-9a-f]{64}$/.test(e)), 'entries are tenant:sha256hex'),
    defaultNote: 'none',
    description: 'tenant:sha256hex,...',
    roles: ['intake-api'],
    secret: true,
  }),
  s({
    name: 'API_KEYS_FILE',
    schema: text(),
    defaultNote: 'none',
    description: 'YAML/JSON {tenants: {name: [sha256...]}, admin: [sha256...]}',
    roles: ['intake-api'],
  }),
  s({
    name: 'ADMIN_API_KEY_SHA256',
    schema: z.string().regex(SHA256, 'expected a sha256 hex digest'),
    defaultNote: 'none',
    description: 'admin key digest',
    roles: ['intake-api'],
    secret: true,
  }),
  s({
    name: 'METRICS_AUTH',
    schema: z
      .string()
      .toLowerCase()
      .pipe(z.enum(['public', 'admin'])),
    default: 'public',
    description: 'who may read /metrics',
    roles: ['intake-api'],
  }),
  s({ name: 'INTAKE_DECODE_CHECK', schema: bool(), default: 'true', description: 'fully decode each image at the door', roles: ['intake-api'] }),
  s({ name: 'INTAKE_MAX_IMAGE_BYTES', schema: int(1), default: String(8 * 1024 * 1024), description: 'image size limit', roles: ['intake-api'] }),
  s({ name: 'INTAKE_MAX_IMAGE_PIXELS', schema: int(1), default: '25000000', description: 'width x height limit (the workers decode with it too)', roles: ALL }),
  s({
    name: 'INTAKE_MAX_IMAGE_ASPECT_RATIO',
    schema: positiveNumber(),
    default: '20',
    description: 'longest over shortest edge (the workers decode with it too)',
    roles: ALL,
  }),
  s({ name: 'INTAKE_MAX_PROMPT_CHARS', schema: int(1), default: '4000', description: 'prompt length limit', roles: ['intake-api'] }),
  s({ name: 'INTAKE_MAX_ANSWER_CHARS', schema: int(1), default: '16000', description: 'answer length limit', roles: ['intake-api'] }),
  s({ name: 'INTAKE_MAX_METADATA_BYTES', schema: int(1), default: '4096', description: 'metadata size limit', roles: ['intake-api'] }),
  s({ name: 'INTAKE_MAX_JSON_DEPTH', schema: int(1), default: '32', description: 'JSON nesting limit', roles: ['intake-api'] }),
  s({ name: 'INTAKE_MAX_BATCH_ITEMS', schema: int(1), default: '500', description: 'items per batch', roles: ['intake-api'] }),
  s({ name: 'INTAKE_MAX_REQUEST_BYTES', schema: int(1), default: String(64 * 1024 * 1024), description: 'HTTP body limit', roles: ['intake-api'] }),
  s({ name: 'INTAKE_MAX_BACKLOG', schema: int(1), default: '10000', description: 'queued jobs beyond which intake answers 429', roles: ['intake-api'] }),
  s({ name: 'INTAKE_RETRY_AFTER_SECONDS', schema: int(1), default: '30', description: 'Retry-After of a 429', roles: ['intake-api'] }),
  // Per-tenant limits (libs/queue tenant-limits.ts): the defaults; TENANT_LIMITS_FILE overrides them per tenant.
  s({
    name: 'TENANT_RATE_PER_SECOND',
    schema: number().min(0),
    default: '0',
    description: 'submissions per second per tenant (0: unlimited)',
    roles: ['intake-api'],
  }),
  s({
    name: 'TENANT_RATE_BURST',
    schema: int(1),
    defaultNote: 'the rate rounded up',
    description: 'submissions a tenant may send at once',
    roles: ['intake-api'],
  }),
  s({
    name: 'TENANT_MAX_IN_FLIGHT',
    schema: int(0),
    default: '0',
    description: "a tenant's items without a final verdict (0: unlimited)",
    roles: ['intake-api'],
  }),
  s({
    name: 'TENANT_MAX_BACKLOG_SHARE',
    schema: number().gt(0).max(1),
    default: '1',
    description: 'fraction of INTAKE_MAX_BACKLOG one tenant may hold',
    roles: ['intake-api'],
  }),
  s({
    name: 'TENANT_LIMITS_FILE',
    schema: text(),
    defaultNote: 'none',
    description: 'YAML/JSON {tenants: {name: {rate_per_second, burst, max_in_flight, max_backlog_share}}}',
    roles: ['intake-api'],
  }),
  s({
    name: 'INTAKE_IMAGE_FORMATS',
    schema: list(z.enum(['png', 'jpeg', 'webp'])),
    default: 'png,jpeg,webp',
    description: 'accepted image formats',
    roles: ['intake-api'],
  }),
  s({
    name: 'REVISION_PROFILES',
    schema: text(),
    defaultNote: 'config/profiles.json if present, else only none',
    description: 'revision profiles file',
    roles: ['intake-api', 'generator', 'aligner'],
  }),
  // Safety (ETA) and the evaluator packs.
  s({
    name: 'ETA_POLICY',
    schema: z.enum(['both', 'either', 'answer']),
    default: 'answer',
    description: "when an answer is aligned (the reference's is both; see DEFAULT_POLICY in libs/contracts)",
    roles: ['intake-api', 'evaluator', 'aligner'],
  }),
  s({ name: 'ETA_TAU_PRE', schema: finiteNumber(), defaultNote: 'ETA_CONFIG, else 0.16', description: 'image threshold', roles: ['evaluator', 'aligner'] }),
  s({ name: 'ETA_TAU_POST', schema: finiteNumber(), defaultNote: 'ETA_CONFIG, else 0.06', description: 'answer threshold', roles: ['evaluator', 'aligner'] }),
  s({
    name: 'ETA_UNSAFE_IMAGE_TEXT',
    schema: text(),
    defaultNote: "the reference's text",
    description: 'text the image is compared with',
    roles: ['evaluator', 'aligner'],
  }),
  s({
    name: 'ETA_CONFIG',
    schema: text(),
    defaultNote: 'config/eta.json if present',
    description: 'fitted ETA thresholds file',
    roles: ['evaluator', 'aligner'],
  }),
  s({ name: 'CLIP_PACK_DIR', schema: text(), default: 'models/factory-clip', description: 'CLIP pack', roles: ['evaluator', 'aligner'] }),
  s({ name: 'REWARD_PACK_DIR', schema: text(), default: 'models/factory-guard', description: 'reward model pack', roles: ['evaluator', 'aligner'] }),
  // VLM engine and execution.
  s({ name: 'VLM_PACK_DIR', schema: text(), default: 'models/factory-vlm', description: 'VLM pack', roles: ['generator', 'aligner'] }),
  s({ name: 'EXECUTION_PROVIDERS', schema: list(text()), default: 'cpu', description: 'onnxruntime providers, first that loads wins', roles: WORKERS }),
  s({
    name: 'REQUIRE_EXECUTION_PROVIDER',
    schema: text(),
    defaultNote: 'none',
    description: 'provider the sessions must land on; one of EXECUTION_PROVIDERS',
    roles: WORKERS,
  }),
  s({
    name: 'ORT_INTRA_OP_THREADS',
    schema: int(1),
    defaultNote: "the CPU quota (cgroup cpu.max), else the CPUs it may run on; onnxruntime's own default is the host's cores",
    description: 'threads per session',
    roles: ['generator', 'evaluator', 'aligner'],
  }),
  s({
    name: 'ORT_SPIN_WAIT',
    schema: bool(),
    defaultNote: "false in the worker roles (the VLM engine, CLIP and the reward model); a lone LocalVlmEngine spins, onnxruntime's default",
    description: "whether a session's threads spin between runs instead of sleeping",
    roles: ['generator', 'evaluator', 'aligner'],
  }),
  // The engine's continuous-batching scheduler (libs/vlm SchedulerOptions; unset: DEFAULT_SCHEDULER_OPTIONS there).
  s({
    name: 'VLM_MAX_BATCH_SIZE',
    schema: int(1),
    defaultNote: '32 (libs/vlm DEFAULT_SCHEDULER_OPTIONS)',
    description: "rows in one decode step at most; also the GPU stages' default job concurrency",
    roles: ['generator', 'aligner'],
  }),
  s({
    name: 'VLM_MIN_BATCH_SIZE',
    schema: int(1),
    defaultNote: '8',
    description: 'fewest rows a prefill takes while a batch runs, unless the oldest has waited VLM_MAX_WAIT_MS',
    roles: ['generator', 'aligner'],
  }),
  s({
    name: 'VLM_MAX_PREFILL_TOKENS',
    schema: int(1),
    defaultNote: '4096',
    description: 'prompt tokens prefilled in one forward call (bounds the stall of running rows)',
    roles: ['generator', 'aligner'],
  }),
  s({
    name: 'VLM_MAX_BATCH_TOKENS',
    schema: int(1),
    defaultNote: '65536',
    description: 'prompt + max new tokens of all rows in the batch (bounds the KV cache; size from GPU memory)',
    roles: ['generator', 'aligner'],
  }),
  s({
    name: 'VLM_MAX_WAIT_MS',
    schema: number().min(0),
    defaultNote: '50',
    description: 'longest a request is held back for VLM_MIN_BATCH_SIZE',
    roles: ['generator', 'aligner'],
  }),
  s({
    name: 'VLM_GROUP_HALF_LIFE_STEPS',
    schema: number().positive(),
    defaultNote: '256',
    description:
      "half-life, in decode steps, of a tenant's use of a full batch: the tenant that used it least goes first and may preempt rows of the one that used it most",
    roles: ['generator', 'aligner'],
  }),
  s({
    name: 'VLM_GROUP_HOLD_MS',
    schema: number().min(0),
    defaultNote: '500',
    description:
      "longest a tenant's waiting rows are held back while rows of a tenant that used the batch far less run, so those decode in a smaller batch with no prefill stalls (0: no hold)",
    roles: ['generator', 'aligner'],
  }),
  s({
    name: 'VLM_PLAIN_DECODER',
    schema: z.enum(['auto', 'true', 'false']).transform((v) => (v === 'auto' ? 'auto' : v === 'true')),
    default: 'auto',
    description: 'also load the plain decoder for decode steps that revise no row and read no taps (auto: decoders up to 64 MB)',
    roles: ['generator', 'aligner'],
  }),
  s({ name: 'GENERATOR_MAX_NEW_TOKENS', schema: int(1), defaultNote: "the pack's generation_config", description: 'answer length', roles: ['generator'] }),
  s({
    name: 'DETECTOR_FILE',
    schema: text(),
    defaultNote: 'config/detectors/factory-vlm.json if present and fitted on the pack, else off',
    description: "hidden-state detector artifact ('none': off)",
    roles: ['generator'],
  }),
  s({ name: 'ETA_DETECTOR_FLAGS', schema: bool(), default: 'false', description: 'hidden_risk >= tau flags the job under every policy', roles: ['generator'] }),
  // Aligner (best-of-N).
  s({ name: 'ALIGNER_N', schema: int(1), default: '5', description: 'candidates per sentence', roles: ['aligner'] }),
  s({
    name: 'ALIGNER_PREFIX',
    schema: z.string(),
    default: 'As an AI assistant',
    description: 'shallow alignment prefix (empty: none)',
    roles: ['aligner'],
    allowEmpty: true,
  }),
  s({ name: 'ALIGNER_MAX_TOTAL_TOKENS', schema: int(1), default: '1024', description: 'generated tokens in all', roles: ['aligner'] }),
  s({ name: 'ALIGNER_TEMPERATURE', schema: positiveNumber(), default: '1.5', description: 'sampling temperature', roles: ['aligner'] }),
  s({ name: 'ALIGNER_SEED', schema: int(Number.MIN_SAFE_INTEGER), default: '1', description: 'seed of sentence 0', roles: ['aligner'] }),
  s({ name: 'ALIGNER_BLOCKED_ANSWER', schema: text(), defaultNote: 'a short refusal', description: 'final answer of a blocked verdict', roles: ['aligner'] }),
  // Tracing (libs/telemetry): the standard OpenTelemetry variables, with the specification's defaults unless noted.
  s({ name: 'OTEL_SDK_DISABLED', schema: bool(), default: 'false', description: 'true: no tracing whatever else is set', roles: ALL }),
  s({
    name: 'OTEL_TRACES_EXPORTER',
    schema: list(z.enum(['otlp', 'console', 'none'], { error: 'expected otlp, console or none' })),
    defaultNote: 'none, or otlp when an OTLP endpoint is set (the spec says otlp: here exporting is off by default)',
    description: 'span exporters',
    roles: ALL,
  }),
  s({
    name: 'OTEL_EXPORTER_OTLP_ENDPOINT',
    schema: httpUrl(),
    defaultNote: 'unset (http://localhost:4318 when OTEL_TRACES_EXPORTER=otlp)',
    description: 'OTLP/HTTP base URL; /v1/traces is appended; setting it turns tracing on',
    roles: ALL,
  }),
  s({
    name: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
    schema: httpUrl(),
    defaultNote: 'OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces',
    description: 'full OTLP/HTTP traces URL; setting it turns tracing on',
    roles: ALL,
  }),
  ...['OTEL_EXPORTER_OTLP_PROTOCOL', 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'].map((name) =>
    s({
      name,
      schema: z.enum(['http/json'], { error: 'only http/json is supported (the exporter sends OTLP/HTTP with JSON bodies)' }),
      default: 'http/json',
      description: 'OTLP encoding (the spec default http/protobuf is not supported)',
      roles: ALL,
    }),
  ),
  ...['OTEL_EXPORTER_OTLP_HEADERS', 'OTEL_EXPORTER_OTLP_TRACES_HEADERS'].map((name) =>
    s({ name, schema: text(), defaultNote: 'none', description: 'key=value,... headers of each export (e.g. an API key)', roles: ALL, secret: true }),
  ),
  s({ name: 'OTEL_EXPORTER_OTLP_TIMEOUT', schema: int(1), default: '10000', description: 'milliseconds per export request', roles: ALL }),
  s({
    name: 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT',
    schema: int(1),
    defaultNote: 'OTEL_EXPORTER_OTLP_TIMEOUT',
    description: 'milliseconds per traces export request',
    roles: ALL,
  }),
  s({ name: 'OTEL_SERVICE_NAME', schema: text(), defaultNote: 'the role (intake-api, generator, ...)', description: 'service.name of the spans', roles: ALL }),
  s({ name: 'OTEL_RESOURCE_ATTRIBUTES', schema: text(), defaultNote: 'none', description: 'key=value,... resource attributes', roles: ALL }),
  s({
    name: 'OTEL_TRACES_SAMPLER',
    schema: z.enum(['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio']),
    default: 'parentbased_always_on',
    description: 'which traces are recorded',
    roles: ALL,
  }),
  s({ name: 'OTEL_TRACES_SAMPLER_ARG', schema: number().min(0).max(1), default: '1', description: 'ratio of the traceidratio samplers', roles: ALL }),
  s({ name: 'OTEL_BSP_SCHEDULE_DELAY', schema: int(0), default: '5000', description: 'milliseconds between span exports', roles: ALL }),
  s({ name: 'OTEL_BSP_MAX_QUEUE_SIZE', schema: int(1), default: '2048', description: 'ended spans buffered; more are dropped', roles: ALL }),
  s({ name: 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', schema: int(1), default: '512', description: 'spans per export request', roles: ALL }),
  s({ name: 'OTEL_BSP_EXPORT_TIMEOUT', schema: int(1), default: '30000', description: 'milliseconds an export may take', roles: ALL }),
  // Webhooks (libs/webhooks): the intake registers endpoints and checks callback URLs, the notifier delivers.
  s({
    name: 'WEBHOOK_ALLOWED_TARGETS',
    schema: list(z.string().regex(/^[a-z0-9.:_\/\[\]-]+$/, 'expected host names, IP addresses or CIDRs')),
    defaultNote: 'none',
    description: 'hosts, IPs or CIDRs webhooks may reach although private, loopback or link-local (and over plain http)',
    roles: ['intake-api', 'notifier'],
  }),
  s({
    name: 'WEBHOOK_CONFIG_FILE',
    schema: text(),
    defaultNote: 'none',
    description: 'JSON {tenants: {name: [{url, secret, events?}]}}: read-only endpoints',
    roles: ['intake-api', 'notifier'],
  }),
  s({ name: 'WEBHOOK_MAX_ENDPOINTS', schema: int(1), default: '10', description: 'endpoints per tenant (API and file together)', roles: ['intake-api'] }),
  s({ name: 'WEBHOOK_TIMEOUT_MS', schema: int(1), default: '10000', description: 'one delivery attempt, connect to response', roles: ['notifier'] }),
  s({
    name: 'WEBHOOK_MAX_RESPONSE_BYTES',
    schema: int(0),
    default: '65536',
    description: 'response bytes read (and dropped) per attempt',
    roles: ['notifier'],
  }),
  s({ name: 'WEBHOOK_BACKOFF_MS', schema: int(1), default: '5000', description: 'first retry delay; doubles up to an hour', roles: ['notifier'] }),
  s({
    name: 'WEBHOOK_GIVE_UP_SECONDS',
    schema: positiveNumber(),
    default: '86400',
    description: 'retries of a delivery span this long, then it is dead-lettered',
    roles: ['notifier'],
  }),
  s({
    name: 'WEBHOOK_DEAD_LETTER_SECONDS',
    schema: positiveNumber(),
    default: '604800',
    description: 'how long dead-lettered deliveries are kept for listing and replay',
    roles: ['notifier'],
  }),
  s({ name: 'WEBHOOK_CONCURRENCY', schema: int(1), default: '32', description: 'deliveries in flight per notifier process', roles: ['notifier'] }),
];

const BY_NAME = new Map(SETTINGS.map((setting) => [setting.name, setting]));

export function setting(name: string): Setting {
  const found = BY_NAME.get(name);
  if (!found) throw new Error(`${name} is not in the settings table (libs/settings)`);
  return found;
}

export function settingsFor(role?: Role): Setting[] {
  return SETTINGS.filter((x) => !role || x.roles.includes(role));
}

export interface SettingIssue {
  name: string;
  /** The bad text, secrets redacted (it lands in logs). */
  value: string;
  message: string;
}

export class SettingsError extends Error {
  readonly name = 'SettingsError';
  readonly code = 'settings_invalid';
  constructor(
    readonly issues: SettingIssue[],
    readonly role?: Role,
  ) {
    super(
      `invalid configuration${role ? ` for ${role}` : ''}: ${issues.length} bad variable${issues.length === 1 ? '' : 's'}\n` +
        issues.map((i) => `  ${i.name}=${JSON.stringify(i.value)}: ${i.message}`).join('\n'),
    );
  }
}

function rawOf(env: NodeJS.ProcessEnv, entry: Setting): string | undefined {
  const raw = env[entry.name];
  if (raw === undefined) return undefined;
  if (entry.allowEmpty) return raw;
  return raw.trim() === '' ? undefined : raw.trim();
}

function parseWith(entry: Setting, raw: string): { ok: true; value: unknown } | { ok: false; message: string } {
  const parsed = entry.schema.safeParse(raw);
  if (parsed.success) return { ok: true, value: parsed.data };
  return { ok: false, message: parsed.error.issues.map((i) => i.message).join('; ') };
}

/**
 * One variable through its schema: its parsed value, or undefined when unset (the caller's default then applies,
 * `entry.default` for a plain one). Throws SettingsError naming the variable on a bad value.
 */
export function readSetting<T = unknown>(env: NodeJS.ProcessEnv, name: string): T | undefined {
  const entry = setting(name);
  const raw = rawOf(env, entry);
  if (raw === undefined) return undefined;
  const parsed = parseWith(entry, raw);
  if (!parsed.ok) throw new SettingsError([{ name, value: redact(entry, raw)!, message: parsed.message }]);
  return parsed.value as T;
}

export interface ResolvedSetting {
  name: string;
  value: unknown;
  /** The text the value came from (redact before printing secrets). */
  raw?: string;
  source: 'env' | 'default';
  default?: string;
  defaultNote?: string;
  description: string;
  roles: readonly Role[];
  secret: boolean;
}

export interface LoadedSettings {
  role?: Role;
  settings: ResolvedSetting[];
  get<T = unknown>(name: string): T | undefined;
}

/** Checks that span variables. */
function crossChecks(values: Map<string, unknown>, env: NodeJS.ProcessEnv): SettingIssue[] {
  const issues: SettingIssue[] = [];
  const required = values.get('REQUIRE_EXECUTION_PROVIDER') as string | undefined;
  const providers = values.get('EXECUTION_PROVIDERS') as string[] | undefined;
  if (required && providers && !providers.includes(required)) {
    issues.push({
      name: 'REQUIRE_EXECUTION_PROVIDER',
      value: env.REQUIRE_EXECUTION_PROVIDER ?? '',
      message: `must be one of EXECUTION_PROVIDERS (${providers.join(',')})`,
    });
  }
  return issues;
}

/**
 * Validates every variable `role` reads (every one in the table without a role) at once; throws one SettingsError
 * listing each bad variable.
 */
export function loadSettings(role?: Role, env: NodeJS.ProcessEnv = process.env): LoadedSettings {
  const issues: SettingIssue[] = [];
  const values = new Map<string, unknown>();
  const settings: ResolvedSetting[] = [];
  for (const entry of settingsFor(role)) {
    const raw = rawOf(env, entry);
    const text = raw ?? entry.default;
    let value: unknown;
    if (text !== undefined) {
      const parsed = parseWith(entry, text);
      if (!parsed.ok) {
        issues.push({ name: entry.name, value: redact(entry, text)!, message: parsed.message });
        continue;
      }
      value = parsed.value;
    }
    values.set(entry.name, value);
    settings.push({
      name: entry.name,
      value,
      raw: text,
      source: raw === undefined ? 'default' : 'env',
      default: entry.default,
      defaultNote: entry.defaultNote,
      description: entry.description,
      roles: entry.roles,
      secret: Boolean(entry.secret),
    });
  }
  issues.push(...crossChecks(values, env));
  if (issues.length) throw new SettingsError(issues, role);
  return { role, settings, get: <T>(name: string) => values.get(name) as T | undefined };
}

/** For main.ts: validates the role's environment, or prints every bad variable and exits 1 before anything starts. */
export function exitOnInvalidSettings(role: Role, env: NodeJS.ProcessEnv = process.env): LoadedSettings {
  try {
    return loadSettings(role, env);
  } catch (err) {
    if (!(err instanceof SettingsError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
}

/** A secret's text for display: API keys and digests fully, a Redis URL's password only. */
export function redact(entry: { name: string; secret?: boolean }, raw: string | undefined): string | undefined {
  if (raw === undefined || !entry.secret) return raw;
  if (entry.name === 'REDIS_URL') {
    try {
      const url = new URL(raw);
      if (url.password) url.password = '***';
      return url.toString();
    } catch {
      return '***';
    }
  }
  return '***';
}
