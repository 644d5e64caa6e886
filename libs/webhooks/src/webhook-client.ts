/**
 * One delivery attempt: a POST to a target the TargetGuard resolved and passed, on a connection pinned to the
 * checked address (the `lookup` of the request answers with it, so a second DNS answer cannot swap in a private
 * one: DNS rebinding), with no redirect followed (a 3xx is a failure: a redirect is a new, unchecked target), one
 * deadline over connect, request and response, and at most `maxResponseBytes` of the response read (and dropped;
 * the connection is cut beyond). A 2xx status is delivered.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { ModerationError } from '@libs/contracts';
import { bareHost, type TargetGuard } from './target-guard';

export const DEFAULT_WEBHOOK_TIMEOUT_MS = 10_000;
export const DEFAULT_WEBHOOK_MAX_RESPONSE_BYTES = 65_536;
const USER_AGENT = 'vlm-moderation-webhooks/1';

export interface WebhookClientOptions {
  timeoutMs: number;
  maxResponseBytes: number;
}

export interface AttemptResult {
  delivered: boolean;
  /** The response status, when one arrived. */
  status?: number;
  /** Why it was not delivered. */
  error?: string;
  /** The guard refused the target: retrying cannot help until the operator or the tenant changes something. */
  forbidden?: boolean;
  /** Response body bytes read; `truncated` when the cap cut the connection. */
  bytesRead: number;
  truncated: boolean;
  ms: number;
}

/** A `lookup` that answers every query with the address already checked. */
function pinnedLookup(address: string, family: 4 | 6): LookupFunction {
  return ((_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (options?.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  }) as unknown as LookupFunction;
}

export class WebhookClient {
  constructor(
    private readonly guard: TargetGuard,
    private readonly options: WebhookClientOptions = { timeoutMs: DEFAULT_WEBHOOK_TIMEOUT_MS, maxResponseBytes: DEFAULT_WEBHOOK_MAX_RESPONSE_BYTES },
  ) {}

  async post(rawUrl: string, body: string, headers: Record<string, string>): Promise<AttemptResult> {
    const started = Date.now();
    const { timeoutMs, maxResponseBytes } = this.options;
    const failed = (error: string, extra: Partial<AttemptResult> = {}): AttemptResult => ({
      delivered: false,
      error,
      bytesRead: 0,
      truncated: false,
      ms: Date.now() - started,
      ...extra,
    });
    let target;
    try {
      // DNS counts against the attempt's deadline too.
      target = await withDeadline(this.guard.resolve(rawUrl), timeoutMs);
    } catch (err) {
      if (err instanceof ModerationError && err.code === 'webhook_target_forbidden') return failed(`target refused: ${err.message}`, { forbidden: true });
      return failed((err as Error).message);
    }
    const remaining = Math.max(1, timeoutMs - (Date.now() - started));
    const { url, address, family } = target;
    const host = bareHost(url);
    return new Promise<AttemptResult>((resolve) => {
      let settled = false;
      let bytesRead = 0;
      let truncated = false;
      let status: number | undefined;
      const finish = (result: Omit<AttemptResult, 'ms' | 'bytesRead' | 'truncated'>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        resolve({ ...result, bytesRead, truncated, ms: Date.now() - started });
      };
      const outcome = () => {
        if (status === undefined) return { delivered: false, error: 'no response' };
        if (status >= 200 && status < 300) return { delivered: true, status };
        if (status >= 300 && status < 400) return { delivered: false, status, error: `HTTP ${status}: redirects are not followed` };
        return { delivered: false, status, error: `HTTP ${status}` };
      };
      const options = {
        method: 'POST',
        host,
        port: url.port || undefined,
        path: `${url.pathname}${url.search}`,
        headers: { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'user-agent': USER_AGENT },
        lookup: pinnedLookup(address, family),
        // A connection of its own: a pooled socket could have been opened to another address.
        agent: false as const,
        // TLS names the host (SNI and the certificate check), whatever address the socket goes to.
        ...(url.protocol === 'https:' && !isIP(host) ? { servername: host } : {}),
      };
      const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(options, (res: IncomingMessage) => {
        status = res.statusCode;
        res.on('data', (chunk: Buffer) => {
          bytesRead += chunk.length;
          if (bytesRead > maxResponseBytes) {
            // The status already decided the outcome; the rest of the body is not worth reading.
            truncated = true;
            finish(outcome());
          }
        });
        res.on('end', () => finish(outcome()));
        res.on('error', (err) => finish(status === undefined ? { delivered: false, error: err.message } : outcome()));
        res.on('aborted', () => finish(outcome()));
      });
      // Past the deadline before any status: not delivered. After a status: the status decides (as with the size cap).
      const timer = setTimeout(() => finish(status === undefined ? { delivered: false, error: `timed out after ${timeoutMs} ms` } : outcome()), remaining);
      req.on('error', (err) => finish({ delivered: false, error: err.message }));
      req.end(body);
    });
  }
}

function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms (DNS)`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
