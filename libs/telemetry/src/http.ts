/**
 * The HTTP server span of each intake request: a W3C `traceparent` from the client is honoured (the span is its
 * child), the name is the route template (`POST /v1/jobs`, never the raw URL with ids), and the attributes are
 * the method, route and status code: no header, body, prompt, image or key. The span is made active for the
 * handler (preHandler, after the body is read), so IntakeService puts it into the jobs it enqueues.
 */
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import {
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_URL_SCHEME,
  ATTR_ERROR_TYPE,
} from '@opentelemetry/semantic-conventions';
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { flushTracing, tracer, tracingEnabled } from './tracing';

interface RequestSpan {
  span: Span;
  ctx: Context;
}

/** Registers the span hooks; call before any other onRequest hook so early refusals (413) get a span too. */
export function traceHttpRequests(fastify: FastifyInstance): void {
  const spans = new WeakMap<FastifyRequest, RequestSpan>();

  fastify.addHook('onRequest', (req: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
    // Tracing off: no span, no header parsing.
    if (!tracingEnabled()) return done();
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    const route = req.routeOptions?.url;
    const span = tracer().startSpan(
      route ? `${req.method} ${route}` : req.method,
      {
        kind: SpanKind.SERVER,
        attributes: { [ATTR_HTTP_REQUEST_METHOD]: req.method, [ATTR_URL_SCHEME]: req.protocol, ...(route ? { [ATTR_HTTP_ROUTE]: route } : {}) },
      },
      parent,
    );
    spans.set(req, { span, ctx: trace.setSpan(parent, span) });
    done();
  });

  // Body parsing runs on the request stream's callbacks, outside any context set in onRequest: the handler's
  // context is entered here, right before it runs.
  fastify.addHook('preHandler', (req: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
    const entry = spans.get(req);
    if (!entry) return done();
    context.with(entry.ctx, done);
  });

  const end = (req: FastifyRequest, status: number | undefined) => {
    const entry = spans.get(req);
    if (!entry) return;
    spans.delete(req);
    if (status !== undefined) {
      entry.span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
      // Server spans: 4xx are the client's errors, not the server's (semantic conventions).
      if (status >= 500) {
        entry.span.setAttribute(ATTR_ERROR_TYPE, String(status));
        entry.span.setStatus({ code: SpanStatusCode.ERROR });
      }
    } else {
      entry.span.setAttribute(ATTR_ERROR_TYPE, 'aborted');
    }
    entry.span.end();
  };
  fastify.addHook('onResponse', (req: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
    end(req, reply.statusCode);
    done();
  });
  fastify.addHook('onRequestAbort', (req: FastifyRequest, done: HookHandlerDoneFunction) => {
    end(req, undefined);
    done();
  });
  // SIGTERM (Nest's shutdown hooks close the server): export what ended before the process goes.
  fastify.addHook('onClose', (_instance: FastifyInstance, done: HookHandlerDoneFunction) => {
    flushTracing().then(
      () => done(),
      () => done(),
    );
  });
}
