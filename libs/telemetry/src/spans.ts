/**
 * The spans of a job and how their context crosses the queues: the intake injects the HTTP span's W3C
 * `traceparent` (and `tracestate`) into the stage job's data, each stage's span is a child of the context its job
 * carries, and the job a stage enqueues carries that stage's span in turn. Attribute names in one place.
 */
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type AttributeValue, type Context, type Span } from '@opentelemetry/api';
import { tracer } from './tracing';

/** Span attributes of this code base (the messaging.* ones are OpenTelemetry's semantic conventions). */
export const ATTR = {
  id: 'moderation.id',
  tenant: 'moderation.tenant',
  stage: 'moderation.stage',
  attempt: 'moderation.attempt',
  batchId: 'moderation.batch_id',
  profile: 'moderation.profile',
  policy: 'moderation.policy',
  model: 'moderation.model',
  decision: 'moderation.decision',
  flagged: 'moderation.flagged',
  skipped: 'moderation.skipped',
  /** Rows prefilled in the same forward call as the job's row (generate; align: 1, its conversation's own prefill). */
  prefillBatch: 'moderation.batch.prefill',
  /** The largest decode step the job's rows joined. */
  decodeBatch: 'moderation.batch.decode_max',
  /** The largest coalesced CLIP image / CLIP text / reward call the job's inputs were in (evaluate; align's scoring). */
  clipImageBatch: 'moderation.batch.clip_image',
  clipTextBatch: 'moderation.batch.clip_text',
  rewardBatch: 'moderation.batch.reward',
  messagingSystem: 'messaging.system',
  messagingOperation: 'messaging.operation.type',
  messagingDestination: 'messaging.destination.name',
  messagingMessageId: 'messaging.message.id',
} as const;

export const MAX_TRACESTATE_CHARS = 512;

/** W3C trace context as it travels in job data. */
export interface TraceCarrier {
  traceparent?: string;
  tracestate?: string;
}

/** The active span's context as job data fields; {} when nothing is traced (tracing off, or no span). */
export function traceCarrier(ctx: Context = context.active()): TraceCarrier {
  if (!trace.getSpan(ctx)) return {};
  const out: Record<string, string> = {};
  propagation.inject(ctx, out);
  const carrier: TraceCarrier = {};
  if (out.traceparent) carrier.traceparent = out.traceparent;
  // The job schema caps it at the W3C's 512 characters; a longer one is dropped rather than failing the enqueue.
  if (out.tracestate && out.tracestate.length <= MAX_TRACESTATE_CHARS) carrier.tracestate = out.tracestate;
  return carrier;
}

/** The context a carrier (job data, HTTP headers) names, or the root context. */
export function contextFromCarrier(carrier: TraceCarrier | Record<string, unknown> | undefined): Context {
  if (!carrier) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, carrier);
}

export type Attributes = Record<string, AttributeValue | undefined>;

function defined(attributes: Attributes): Record<string, AttributeValue> {
  return Object.fromEntries(Object.entries(attributes).filter(([, v]) => v !== undefined)) as Record<string, AttributeValue>;
}

/** Sets attributes on the active span (undefined ones skipped); a no-op without one. */
export function annotateActiveSpan(attributes: Attributes): void {
  const span = trace.getActiveSpan();
  if (span?.isRecording()) span.setAttributes(defined(attributes));
}

const maxima = new WeakMap<Span, Map<string, number>>();

/**
 * A callback bound to the span active now that keeps under `attribute` the largest value it is given: how a
 * coalesced model call, which runs for many jobs at once, reports its batch size to each of their spans.
 * Undefined when nothing records, so an untraced caller pays nothing later.
 */
export function maxAttributeRecorder(attribute: string): ((value: number) => void) | undefined {
  const span = trace.getActiveSpan();
  if (!span?.isRecording()) return undefined;
  return (value) => {
    let seen = maxima.get(span);
    if (!seen) maxima.set(span, (seen = new Map()));
    const best = Math.max(seen.get(attribute) ?? 0, value);
    seen.set(attribute, best);
    span.setAttribute(attribute, best);
  };
}

/** Ends `span` with an error status and the exception recorded. */
export function failSpan(span: Span, err: unknown): void {
  const error = err instanceof Error ? err : new Error(String(err));
  span.recordException(error);
  span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
}

/**
 * Runs `fn` inside a CONSUMER span `<stage> process`, child of the context `carrier` names (the job's
 * traceparent); the exception and an error status are recorded when `fn` throws.
 */
export async function inStageSpan<T>(stage: string, carrier: TraceCarrier, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  const parent = contextFromCarrier(carrier);
  const span = tracer().startSpan(`${stage} process`, { kind: SpanKind.CONSUMER, attributes: defined(attributes) }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (err) {
    failSpan(span, err);
    throw err;
  } finally {
    span.end();
  }
}
