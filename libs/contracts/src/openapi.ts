import { z } from 'zod';
import {
  ApiErrorSchema,
  BatchAcceptedSchema,
  BatchFormItemSchema,
  BatchItemSchema,
  BatchStatusSchema,
  BatchSubmissionFormSchema,
  BatchSubmissionSchema,
  JobAcceptedSchema,
  JobSubmissionFormSchema,
  JobSubmissionSchema,
  VerdictPageSchema,
  DeadLetterPageSchema,
  DeadLetterSchema,
  ReplayAcceptedSchema,
  WebhookCreatedSchema,
  WebhookEndpointSchema,
  WebhookEventSchema,
  WebhookListSchema,
  WebhookRegistrationSchema,
} from './api';
import { ERROR_CODES, type ErrorCode } from './errors';
import { DEFAULT_LIMITS, type Limits } from './limits';
import { VerdictSchema } from './verdict';

const HealthSchema = z.object({ status: z.literal('ok').describe('Always `ok` while the process answers') }).describe('Liveness');
const ReadinessSchema = z
  .object({
    status: z.enum(['ok', 'unavailable']).describe('ok when Redis answered PING within a second'),
    redis: z.string().describe('PONG, or why Redis did not answer'),
  })
  .describe('Readiness: whether Redis answers');

/** The public schemas (request and response bodies); queue payloads such as StageJob are internal and stay out. */
const PUBLIC_SCHEMAS: Record<string, z.ZodType> = {
  JobSubmission: JobSubmissionSchema,
  JobSubmissionForm: JobSubmissionFormSchema,
  BatchSubmission: BatchSubmissionSchema,
  BatchSubmissionForm: BatchSubmissionFormSchema,
  BatchFormItem: BatchFormItemSchema,
  BatchItem: BatchItemSchema,
  JobAccepted: JobAcceptedSchema,
  BatchAccepted: BatchAcceptedSchema,
  BatchStatus: BatchStatusSchema,
  Verdict: VerdictSchema,
  VerdictPage: VerdictPageSchema,
  ApiError: ApiErrorSchema,
  Health: HealthSchema,
  Readiness: ReadinessSchema,
  WebhookRegistration: WebhookRegistrationSchema,
  WebhookEndpoint: WebhookEndpointSchema,
  WebhookCreated: WebhookCreatedSchema,
  WebhookList: WebhookListSchema,
  WebhookEvent: WebhookEventSchema,
  DeadLetter: DeadLetterSchema,
  DeadLetterPage: DeadLetterPageSchema,
  ReplayAccepted: ReplayAcceptedSchema,
};

type Json = Record<string, unknown>;

/** OpenAPI 3.0 marks nullability with `nullable: true`, but an `enum` still has to list null for null to validate. */
function fixNullableEnums(node: unknown): void {
  if (Array.isArray(node)) return node.forEach(fixNullableEnums);
  if (!node || typeof node !== 'object') return;
  const o = node as Json;
  delete o.$id;
  if (o.nullable === true && Array.isArray(o.enum) && !o.enum.includes(null)) o.enum.push(null);
  Object.values(o).forEach(fixNullableEnums);
}

/** JSON Schemas (OpenAPI 3.0 dialect) for the document's components, derived from the zod contracts so the two never drift. */
export function openApiComponentSchemas(): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(PUBLIC_SCHEMAS)) registry.add(schema, { id });
  const out = z.toJSONSchema(registry, {
    target: 'openapi-3.0',
    unrepresentable: 'any',
    uri: (id) => `#/components/schemas/${id}`,
  }).schemas as Record<string, Json>;
  fixNullableEnums(out);
  return out;
}

export interface OpenApiOptions {
  limits?: Limits;
  /** `admin`: /metrics needs the admin key; `public`: anyone may scrape it. */
  metricsAuth?: 'public' | 'admin';
  servers?: { url: string; description: string }[];
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad request',
  401: 'No API key, or an unknown one',
  403: 'The key may not do this',
  404: 'No such resource for this key',
  408: 'The request was not received in time',
  409: 'Conflict: an Idempotency-Key in use, or a limit on what a tenant may hold',
  413: 'Over a size limit',
  415: 'Unsupported media type or image format',
  422: 'The input cannot be processed',
  429: 'The backlog is full, or the tenant is over its request rate, items in flight or backlog share; retry after Retry-After',
  431: 'The request headers are over the size limit',
  500: 'Internal error',
  503: 'The queue store is unavailable or full; retry after Retry-After',
};
const RETRY_AFTER = { 'Retry-After': { description: 'Seconds to wait before retrying', schema: { type: 'integer', minimum: 1 } } };

function errorResponse(status: number, codes: ErrorCode[]): Json {
  for (const code of codes) if (ERROR_CODES[code] !== status) throw new Error(`error code ${code} is answered with ${ERROR_CODES[code]}, not ${status}`);
  return {
    description: `${STATUS_TEXT[status]}. error.code is one of: ${codes.join(', ')}`,
    ...([409, 429, 503].includes(status) ? { headers: RETRY_AFTER } : {}),
    content: { 'application/json': { schema: ref('ApiError') } },
  };
}

/** Error responses by status; `codes` narrows each status to the codes that route can answer. */
function errors(byStatus: Record<number, ErrorCode[]>): Json {
  const out: Json = {};
  for (const [status, codes] of Object.entries(byStatus)) out[status] = errorResponse(Number(status), codes);
  return out;
}

const SECURITY = [{ bearer: [] }, { apiKey: [] }, { basic: [] }];
/** Answered by the HTTP server itself on any route (malformed request, slow or oversized headers). */
const TRANSPORT: Record<number, ErrorCode[]> = { 408: ['request_timeout'], 431: ['headers_too_large'], 500: ['internal'] };
const READ_ERRORS: Record<number, ErrorCode[]> = {
  ...TRANSPORT,
  400: ['invalid_id', 'invalid_request'],
  401: ['unauthorized'],
  404: ['not_found'],
  503: ['redis_unavailable'],
};
const SUBMIT_ERRORS = (batch: boolean): Record<number, ErrorCode[]> => ({
  ...TRANSPORT,
  400: [
    'invalid_request',
    'unknown_field',
    'prompt_empty',
    'prompt_too_long',
    'prompt_invisible',
    'text_invalid_unicode',
    'answer_too_long',
    'metadata_too_large',
    'json_too_deep',
    'too_many_files',
    'invalid_webhook_url',
    ...(batch ? (['image_missing', 'batch_empty'] as ErrorCode[]) : []),
  ],
  401: ['unauthorized'],
  403: ['forbidden', 'profile_not_allowed'],
  409: ['idempotency_conflict', 'idempotency_in_progress'],
  413: ['request_too_large', 'image_too_large', 'image_too_many_pixels', ...(batch ? (['batch_too_large'] as ErrorCode[]) : [])],
  415: ['unsupported_media_type', 'unsupported_image_format'],
  422: ['image_undecodable', 'image_aspect_ratio', 'unknown_profile', 'webhook_target_forbidden', 'callback_not_registered'],
  429: ['backlog_full', 'tenant_rate_limited', 'tenant_in_flight_limit', 'tenant_backlog_share'],
  503: ['redis_unavailable', 'redis_full'],
});

const idParam = (what: string) => ({
  name: 'id',
  in: 'path',
  required: true,
  description: `The ${what} id, as returned when it was submitted`,
  schema: { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9_-]{3,80}$' },
});
const IDEMPOTENCY_KEY = {
  name: 'Idempotency-Key',
  in: 'header',
  required: false,
  description: 'The same key and body give the same job (or batch) again, with created false; the same key with another body is a 409 idempotency_conflict',
  schema: { type: 'string', minLength: 1 },
};

/** W3C trace context: the intake's span (and the stages after it) join the caller's trace; see docs/deploy.md "Tracing". */
const TRACE_CONTEXT = [
  {
    name: 'traceparent',
    in: 'header',
    required: false,
    description:
      "W3C Trace Context of the caller's span: with tracing on, this request's span and every stage of the jobs it creates are in that trace (an unsampled flag is honoured). Ignored when tracing is off; a malformed value is ignored, never refused",
    schema: { type: 'string', pattern: '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$' },
  },
  {
    name: 'tracestate',
    in: 'header',
    required: false,
    description: 'W3C Trace Context vendor state, carried with traceparent',
    schema: { type: 'string' },
  },
];

const signatureHeader = (name: string, description: string) => ({ name, in: 'header', required: true, description, schema: { type: 'string' } });

/** What the notifier POSTs to an endpoint (or a callback_url): a signed WebhookEvent (Standard Webhooks headers). */
function webhookCallback(expression: string): Json {
  return {
    [expression]: {
      post: {
        summary: 'A webhook event, signed',
        description:
          'Sent by the notifier role after a verdict (or a batch) became final, at least once: retried with exponential backoff (WEBHOOK_BACKOFF_MS, doubling up to an hour) on a non-2xx answer, a timeout (WEBHOOK_TIMEOUT_MS) or a connection error for WEBHOOK_GIVE_UP_SECONDS, then dead-lettered. Redirects are not followed. De-duplicate on webhook-id; verify webhook-signature (see docs/deploy.md, Webhooks).',
        parameters: [
          signatureHeader('webhook-id', "The event id (the body's id): the same on every attempt and replay"),
          signatureHeader('webhook-timestamp', 'Unix seconds of this attempt; refuse one more than 5 minutes from your clock'),
          signatureHeader(
            'webhook-signature',
            '`v1,` + base64 HMAC-SHA256 of `<webhook-id>.<webhook-timestamp>.<body>` keyed with the base64-decoded secret after `whsec_` (several space-separated when secrets rotate)',
          ),
        ],
        // The receiver authenticates the sender by the signature, not by a credential the notifier presents.
        security: [],
        requestBody: { required: true, content: { 'application/json': { schema: ref('WebhookEvent') } } },
        responses: {
          '2XX': { description: 'Delivered' },
          '4XX': { description: 'Not delivered: retried until the give-up window ends' },
          '5XX': { description: 'Not delivered: retried until the give-up window ends' },
        },
      },
    },
  };
}

const WEBHOOK_ID_PARAM = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'The webhook endpoint id, as returned when it was registered',
  schema: { type: 'string', pattern: '^whk_[0-9a-f]{24}$' },
};
const ADMIN_READ_ERRORS: Record<number, ErrorCode[]> = {
  ...TRANSPORT,
  400: ['invalid_request'],
  401: ['unauthorized'],
  403: ['forbidden'],
  503: ['redis_unavailable'],
};
const PAGE_PARAMS = [
  {
    name: 'cursor',
    in: 'query',
    required: false,
    description: 'next_cursor of the previous page, as given',
    schema: { type: 'string', pattern: '^[A-Za-z0-9_-]+$' },
  },
  { name: 'limit', in: 'query', required: false, description: 'Entries per page', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
];

/** The routes of webhook endpoints (tenant key) and of the dead-letter state (admin key). */
function webhookPaths(): Json {
  const json = (schema: string) => ({ 'application/json': { schema: ref(schema) } });
  return {
    '/v1/webhooks': {
      post: {
        tags: ['webhooks'],
        operationId: 'registerWebhook',
        summary: 'Register a webhook endpoint',
        description:
          'Events of the tenant (verdict.completed, verdict.failed, batch.completed, or the subset in `events`) are POSTed to `url`, signed with the secret answered here, once. An https URL without credentials; a literal private, loopback or link-local address is refused (422 webhook_target_forbidden) unless the operator allows it, and names are checked by DNS at each delivery. At most WEBHOOK_MAX_ENDPOINTS (default 10) per tenant (409 too_many_webhooks).',
        security: SECURITY,
        requestBody: { required: true, description: 'The endpoint', content: json('WebhookRegistration') },
        callbacks: { webhookEvent: webhookCallback('{$request.body#/url}') },
        responses: {
          201: { description: 'Registered: keep the secret, it is not shown again', content: json('WebhookCreated') },
          ...errors({
            ...TRANSPORT,
            400: ['invalid_request', 'unknown_field', 'invalid_webhook_url', 'json_too_deep'],
            401: ['unauthorized'],
            403: ['forbidden'],
            409: ['too_many_webhooks'],
            413: ['request_too_large'],
            415: ['unsupported_media_type'],
            422: ['webhook_target_forbidden'],
            503: ['redis_unavailable', 'redis_full'],
          }),
        },
      },
      get: {
        tags: ['webhooks'],
        operationId: 'listWebhooks',
        summary: "The tenant's webhook endpoints, without secrets",
        security: SECURITY,
        responses: {
          200: { description: "The tenant's endpoints; those of the operator's file are read_only", content: json('WebhookList') },
          ...errors({ ...TRANSPORT, 400: ['invalid_request'], 401: ['unauthorized'], 403: ['forbidden'], 503: ['redis_unavailable'] }),
        },
      },
    },
    '/v1/webhooks/{id}': {
      delete: {
        tags: ['webhooks'],
        operationId: 'deleteWebhook',
        summary: 'Delete a webhook endpoint',
        description:
          "Deliveries already queued to it give up (there is no secret left to sign them); a read_only endpoint is removed from the operator's file instead (403).",
        security: SECURITY,
        parameters: [WEBHOOK_ID_PARAM],
        responses: {
          204: { description: 'Deleted' },
          ...errors({
            ...TRANSPORT,
            400: ['invalid_id', 'invalid_request'],
            401: ['unauthorized'],
            403: ['forbidden'],
            404: ['not_found'],
            503: ['redis_unavailable'],
          }),
        },
      },
    },
    '/admin/webhooks/dead-letter': {
      get: {
        tags: ['admin'],
        operationId: 'listDeadLetters',
        summary: 'Webhook deliveries that gave up, latest first (admin key)',
        security: SECURITY,
        parameters: PAGE_PARAMS,
        responses: { 200: { description: 'One page of dead-lettered deliveries', content: json('DeadLetterPage') }, ...errors(ADMIN_READ_ERRORS) },
      },
    },
    '/admin/webhooks/dead-letter/{jobId}/replay': {
      post: {
        tags: ['admin'],
        operationId: 'replayDeadLetter',
        summary: 'Queue a dead-lettered delivery again, with a fresh retry schedule (admin key)',
        security: SECURITY,
        parameters: [
          {
            name: 'jobId',
            in: 'path',
            required: true,
            description: 'The delivery id (`id` in the dead-letter list)',
            schema: { type: 'string', pattern: '^evt_[0-9]+-[0-9]+_[A-Za-z0-9_]+$' },
          },
        ],
        responses: {
          202: { description: 'Queued again; it keeps its webhook-id', content: json('ReplayAccepted') },
          ...errors({ ...ADMIN_READ_ERRORS, 400: ['invalid_id', 'invalid_request'], 404: ['not_found'] }),
        },
      },
    },
  };
}

/** The whole OpenAPI document of the intake API: what each route takes and every response it can give. */
export function openApiDocument(options: OpenApiOptions = {}): Json {
  const limits = options.limits ?? DEFAULT_LIMITS;
  const metricsAdmin = options.metricsAuth === 'admin';
  const limitsText =
    `Limits: image ${limits.maxImageBytes} bytes and ${limits.maxImagePixels} pixels (${limits.imageFormats.join(', ')}), prompt ${limits.maxPromptChars} characters, answer ${limits.maxAnswerChars}, metadata ${limits.maxMetadataBytes} bytes, JSON depth ${limits.maxJsonDepth}, ${limits.maxBatchItems} items per batch.` +
    ' Per tenant (set by the operator): a request rate (429 tenant_rate_limited, Retry-After from the rate), items without a final verdict (429 tenant_in_flight_limit) and a share of the backlog (429 tenant_backlog_share); the submissions count against the rate, reads do not.';
  const submit = (batch: boolean): Json => ({
    tags: ['moderation'],
    operationId: batch ? 'submitBatch' : 'submitJob',
    summary: batch ? 'Submit many jobs at once' : 'Submit one image + prompt (or an answer to moderate)',
    description: batch
      ? `JSON ({ items, metadata? }, or a bare array of items, images as base64) or multipart/form-data (an \`items\` field holding JSON and one file per item). ${limitsText}`
      : `JSON (image as base64 or a data: URL) or multipart/form-data (image as a file in the field \`image\`). ${limitsText}`,
    security: SECURITY,
    parameters: [IDEMPOTENCY_KEY, ...TRACE_CONTEXT],
    requestBody: {
      required: true,
      description: batch ? 'The batch' : 'The job',
      content: {
        'application/json': {
          schema: batch
            ? { oneOf: [ref('BatchSubmission'), { type: 'array', items: ref('BatchItem'), description: 'A bare array of items (no batch metadata)' }] }
            : ref('JobSubmission'),
        },
        'multipart/form-data': { schema: ref(batch ? 'BatchSubmissionForm' : 'JobSubmissionForm') },
      },
    },
    callbacks: { webhookEvent: webhookCallback('{$request.body#/callback_url}') },
    responses: {
      202: {
        description: batch ? 'Accepted: poll poll_url for the counts, verdicts_url for the verdicts' : 'Accepted: poll poll_url for the verdict',
        content: { 'application/json': { schema: ref(batch ? 'BatchAccepted' : 'JobAccepted') } },
      },
      ...errors(SUBMIT_ERRORS(batch)),
    },
  });
  const read = (operationId: string, summary: string, what: 'job' | 'batch', schema: string, extra: Json = {}): Json => ({
    tags: ['moderation'],
    operationId,
    summary,
    security: SECURITY,
    parameters: [idParam(what), ...((extra.parameters as unknown[]) ?? [])],
    responses: { 200: { description: summary, content: { 'application/json': { schema: ref(schema) } } }, ...errors(READ_ERRORS) },
  });
  return {
    openapi: '3.0.3',
    info: {
      title: 'VLM moderation intake API',
      version: '1',
      description:
        'Submit image + prompt jobs and batches; poll verdicts. Every error is `{ error: { code, message, details? } }` with a machine-readable error.code. Request bodies are strict: unknown fields are refused with 400 unknown_field.',
      license: { name: 'Apache-2.0', url: 'https://www.apache.org/licenses/LICENSE-2.0' },
    },
    servers: options.servers ?? [{ url: 'http://127.0.0.1:3000', description: 'A local intake API' }],
    tags: [
      { name: 'moderation', description: 'Jobs, batches and verdicts (need a tenant API key)' },
      { name: 'operations', description: 'Probes and metrics' },
      { name: 'webhooks', description: "The tenant's webhook endpoints: signed events when verdicts and batches become final (need a tenant API key)" },
      { name: 'admin', description: 'Operations on webhook deliveries (need the admin key)' },
    ],
    paths: {
      '/v1/jobs': { post: submit(false) },
      '/v1/jobs/{id}': { get: read('getJob', 'Status and verdict of one job', 'job', 'Verdict') },
      '/v1/batches': { post: submit(true) },
      '/v1/batches/{id}': { get: read('getBatch', 'Counts of a batch by status', 'batch', 'BatchStatus') },
      '/v1/batches/{id}/verdicts': {
        get: read('getBatchVerdicts', 'Verdicts of a batch in submission order, cursor-paginated', 'batch', 'VerdictPage', {
          parameters: [
            {
              name: 'cursor',
              in: 'query',
              required: false,
              description: 'next_cursor of the previous page, as given',
              schema: { type: 'string', pattern: '^[A-Za-z0-9_-]+$' },
            },
            {
              name: 'limit',
              in: 'query',
              required: false,
              description: 'Verdicts per page',
              schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            },
          ],
        }),
      },
      ...webhookPaths(),
      '/healthz': {
        get: {
          tags: ['operations'],
          operationId: 'healthz',
          summary: 'Liveness: the process answers',
          security: [],
          responses: {
            200: { description: 'Alive', content: { 'application/json': { schema: ref('Health') } } },
            ...errors({ 400: ['invalid_request'], ...TRANSPORT }),
          },
        },
      },
      '/readyz': {
        get: {
          tags: ['operations'],
          operationId: 'readyz',
          summary: 'Readiness: Redis answers PING',
          security: [],
          responses: {
            200: { description: 'Ready', content: { 'application/json': { schema: ref('Readiness') } } },
            503: { description: 'Redis does not answer', content: { 'application/json': { schema: ref('Readiness') } } },
            ...errors({ 400: ['invalid_request'], ...TRANSPORT }),
          },
        },
      },
      '/metrics': {
        get: {
          tags: ['operations'],
          operationId: 'metrics',
          summary: 'Prometheus metrics',
          description: metricsAdmin ? 'Needs the admin key (METRICS_AUTH=admin).' : 'Open to scrapers (METRICS_AUTH=public).',
          security: metricsAdmin ? SECURITY : [],
          responses: {
            200: {
              description: 'Prometheus text exposition format',
              content: { 'text/plain': { schema: { type: 'string', description: 'Prometheus text format 0.0.4' } } },
            },
            ...errors({
              400: ['invalid_request'],
              ...TRANSPORT,
              ...((metricsAdmin ? { 401: ['unauthorized'], 403: ['forbidden'] } : {}) as Record<number, ErrorCode[]>),
            }),
          },
        },
      },
    },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <API key>' },
        apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'The API key in X-API-Key' },
        basic: { type: 'http', scheme: 'basic', description: 'Basic auth with the API key as the password (any user name)' },
      },
      schemas: openApiComponentSchemas(),
    },
  };
}
