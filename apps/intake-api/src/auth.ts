import { createParamDecorator, Inject, Injectable, SetMetadata, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { ModerationError } from '@libs/contracts';
import { sha256Hex } from '@libs/storage';
import { INTAKE_CONFIG, type IntakeConfig } from './config';

export interface Principal {
  /** Null for the admin key: operations only, it owns no jobs but may read any. */
  tenant: string | null;
  admin: boolean;
}

/** The key from `Authorization: Bearer`, `X-API-Key`, or Basic auth's password (so a browser can open the dashboard). */
export function presentedKey(headers: Record<string, string | string[] | undefined>): string | undefined {
  const apiKey = headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey) return apiKey;
  const auth = headers.authorization;
  if (typeof auth !== 'string') return undefined;
  const [scheme, value] = auth.split(' ', 2);
  if (/^bearer$/i.test(scheme) && value) return value.trim();
  if (/^basic$/i.test(scheme) && value) {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    // user:password, the key being the password; without the colon there is no password to take.
    if (colon < 0) throw new ModerationError('unauthorized', 'Basic credentials must be user:key (the API key is the password)');
    return decoded.slice(colon + 1) || undefined;
  }
  return undefined;
}

export function authenticate(config: IntakeConfig, headers: Record<string, string | string[] | undefined>): Principal {
  const key = presentedKey(headers);
  if (!key) throw new ModerationError('unauthorized', 'missing API key (Authorization: Bearer <key> or X-API-Key)');
  const hash = sha256Hex(key);
  if (config.adminKeys.has(hash)) return { tenant: null, admin: true };
  const tenant = config.tenantKeys.get(hash);
  if (!tenant) throw new ModerationError('unauthorized', 'unknown API key');
  return { tenant, admin: false };
}

/** Operations surfaces (queue dashboard, metrics when METRICS_AUTH=admin): 401 without a key, 403 with a tenant's. */
export function requireAdmin(config: IntakeConfig, headers: Record<string, string | string[] | undefined>, what: string): Principal {
  const principal = authenticate(config, headers);
  if (!principal.admin) throw new ModerationError('forbidden', `${what} needs the admin key`);
  return principal;
}

const PUBLIC = 'intake:public';
/** Routes probes and scrapers reach without a key. */
export const Public = () => SetMetadata(PUBLIC, true);

@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    @Inject(INTAKE_CONFIG) private readonly config: IntakeConfig,
    private readonly reflector: Reflector,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC, [context.getHandler(), context.getClass()])) return true;
    const req = context.switchToHttp().getRequest<FastifyRequest & { principal?: Principal }>();
    req.principal = authenticate(this.config, req.headers);
    return true;
  }
}

export const CurrentPrincipal = createParamDecorator((_: unknown, ctx: ExecutionContext): Principal => {
  return ctx.switchToHttp().getRequest<{ principal: Principal }>().principal;
});

/** Submitting needs a tenant: the admin key is for reading and operations, not for owning jobs. */
export function tenantOf(principal: Principal): string {
  if (!principal.tenant) throw new ModerationError('forbidden', 'the admin key cannot submit jobs; use a tenant key');
  return principal.tenant;
}

/** Foreign jobs answer 404, not 403: a tenant must not learn that another tenant's id exists. */
export function canRead(principal: Principal, owner: string): boolean {
  return principal.admin || principal.tenant === owner;
}
