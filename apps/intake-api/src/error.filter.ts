import { Catch, HttpException, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { ModerationError, type ErrorCode } from '@libs/contracts';
import { asRedisError } from '@libs/queue';

const BY_STATUS: Record<number, ErrorCode> = {
  400: 'invalid_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  408: 'request_timeout',
  413: 'request_too_large',
  414: 'invalid_request',
  415: 'unsupported_media_type',
  431: 'headers_too_large',
  429: 'backlog_full',
  503: 'redis_unavailable',
};

/** Errors from fastify's router and body parsing and from @fastify/multipart, by their `code`. */
const BY_FASTIFY_CODE: Record<string, ErrorCode> = {
  FST_ERR_BAD_URL: 'invalid_request',
  // Every path parameter of this API is an id, and no id is that long.
  FST_ERR_MAX_PARAM_LENGTH: 'invalid_id',
  FST_ERR_CTP_BODY_TOO_LARGE: 'request_too_large',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_request',
  FST_REQ_FILE_TOO_LARGE: 'image_too_large',
  FST_FILES_LIMIT: 'too_many_files',
  FST_PARTS_LIMIT: 'request_too_large',
  FST_FIELDS_LIMIT: 'request_too_large',
  FST_PROTO_VIOLATION: 'invalid_request',
  FST_INVALID_JSON_FIELD_ERROR: 'invalid_request',
  FST_MP_PREMATURE_CLOSE: 'invalid_request',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_request',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'unsupported_media_type',
};

const FASTIFY_MESSAGES: Record<string, string> = {
  FST_ERR_BAD_URL: 'the URL is not valid (a percent-escape does not decode)',
  FST_ERR_MAX_PARAM_LENGTH: 'a path parameter is longer than any id',
};

/** Retry-After for refusals that pass on a retry when the error does not carry its own `retry_after_seconds`. */
const TRANSIENT_RETRY_AFTER_SECONDS: Partial<Record<ErrorCode, number>> = {
  backlog_full: 30,
  idempotency_in_progress: 1,
  redis_unavailable: 5,
  redis_full: 30,
};

export interface RenderedError {
  status: number;
  body: { error: { code: string; message: string; details?: Record<string, unknown> } };
  retryAfter?: number;
}

export function renderError(thrown: unknown): RenderedError {
  // A Redis failure from any route (OOM, unreachable, timed out) is the API's 503 redis_full / redis_unavailable:
  // mapped here once, so handlers need no try/catch of their own.
  const err = asRedisError(thrown);
  if (err instanceof ModerationError) {
    // Every refusal that a later retry can pass says when: its own figure, else a default for the transient codes.
    const stated = Number(err.details?.retry_after_seconds);
    const retryAfter = Number.isFinite(stated) && stated > 0 ? stated : TRANSIENT_RETRY_AFTER_SECONDS[err.code];
    return { status: err.status, body: { error: { code: err.code, message: err.message, details: err.details } }, retryAfter };
  }
  const e = err as { code?: string; statusCode?: number; message?: string };
  if (e && typeof e.code === 'string' && BY_FASTIFY_CODE[e.code]) {
    const code = BY_FASTIFY_CODE[e.code];
    const probe = new ModerationError(code, '');
    return { status: probe.status, body: { error: { code, message: FASTIFY_MESSAGES[e.code] ?? e.message ?? code } } };
  }
  if (err instanceof HttpException) {
    const status = err.getStatus();
    const code = BY_STATUS[status] ?? (status >= 500 ? 'internal' : 'invalid_request');
    const response = err.getResponse();
    const message = typeof response === 'string' ? response : ((response as { message?: unknown }).message ?? err.message);
    return { status, body: { error: { code, message: Array.isArray(message) ? message.join('; ') : String(message) } } };
  }
  if (e && typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { status: e.statusCode, body: { error: { code: BY_STATUS[e.statusCode] ?? 'invalid_request', message: e.message ?? 'bad request' } } };
  }
  return { status: 500, body: { error: { code: 'internal', message: 'internal error' } } };
}

/** Every error leaves as `{ error: { code, message, details? } }` with the code's HTTP status. */
@Catch()
export class ErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger('IntakeApi');

  constructor(private readonly onRejected?: (code: string) => void) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    const rendered = renderError(exception);
    if (rendered.status >= 500) this.logger.error(exception instanceof Error ? exception.stack : String(exception));
    this.onRejected?.(rendered.body.error.code);
    if (rendered.retryAfter) reply.header('Retry-After', String(rendered.retryAfter));
    // A handler's own @Header('Content-Type') (e.g. /metrics' text/plain) must not stick to its error body.
    reply.type('application/json; charset=utf-8').status(rendered.status).send(rendered.body);
  }
}
