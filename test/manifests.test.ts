/**
 * The deployment files against the code: queue names and the Redis keys KEDA reads, ports, env variables,
 * probe paths, commands, grace periods and GPU requests must match what the apps actually use.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_QUEUE_PREFIX, STAGES, type Stage } from '@libs/contracts';
import { kedaQueueKeys, LONGEST_JOB_SECONDS, queuePrefix } from '@libs/queue';
import { SETTINGS } from '@libs/settings';
import { DEFAULT_WORKER_HEALTH_PORT, WORKER_PROBE_PATHS } from '@libs/worker';
import { DEFAULT_INTAKE_PORT } from '../apps/intake-api/src/config';

const ROOT = join(__dirname, '..');
type Doc = Record<string, any>;

const k8sDocs: (Doc & { file: string })[] = readdirSync(join(ROOT, 'k8s'))
  .filter((f) => /\.ya?ml$/.test(f))
  .flatMap((file) =>
    parseAllDocuments(readFileSync(join(ROOT, 'k8s', file), 'utf8'))
      .map((d) => d.toJS() as Doc)
      .filter(Boolean)
      .map((d) => ({ ...d, file })),
  );
const compose = parseAllDocuments(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true })[0].toJS({ maxAliasCount: -1 }) as Doc;

const of = (kind: string) => k8sDocs.filter((d) => d.kind === kind);
const byName = (kind: string, name: string) => of(kind).find((d) => d.metadata.name === name);

/** Role -> the queue it consumes. */
const ROLE_STAGE: Record<string, Stage> = { generator: 'generate', evaluator: 'evaluate', aligner: 'align' };
const GPU_ROLES = ['generator', 'aligner'];
const ROLES = ['intake-api', ...Object.keys(ROLE_STAGE)];

/** An env variable the code reads: one of the settings table's (@libs/settings), which each role validates at start-up. */
function codeReads(name: string): boolean {
  return SETTINGS.some((s) => s.name === name);
}

/** Variables the runtime itself reads (Node, onnxruntime-node's installer). */
const PLATFORM_ENV = new Set(['NODE_ENV', 'NODE_OPTIONS', 'ONNXRUNTIME_NODE_INSTALL']);

/** The user the images run as (node:24's `node`, and the one Dockerfile.gpu creates). */
const NODE_UID = 1000;
/** The images' working directory: what the code resolves relative paths against. */
const IMAGE_WORKDIR = '/app';

/** A path inside the image, relative to the repo (the image copies config/ to /app/config). */
function imagePathOf(path: string | undefined): string | undefined {
  expect(path?.startsWith(`${IMAGE_WORKDIR}/`), String(path)).toBe(true);
  const rel = path!.slice(IMAGE_WORKDIR.length + 1);
  expect(existsSync(join(ROOT, rel)), rel).toBe(true);
  return rel;
}

/** `node dist/apps/<role>/src/main.js`: what `npm run build` emits for apps/<role>/src/main.ts (tsconfig.build.json includes apps/). */
function expectCompiledEntry(cmd: string[], role: string): void {
  expect(cmd, role).toEqual(['node', `dist/apps/${role}/src/main.js`]);
  expect(existsSync(join(ROOT, `apps/${role}/src/main.ts`)), role).toBe(true);
  expect(JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')).include).toContain('apps/**/*.ts');
}

function container(deployment: Doc): Doc {
  return deployment.spec.template.spec.containers[0];
}

function containerEnv(deployment: Doc): Map<string, string> {
  const env = new Map<string, string>();
  for (const ref of container(deployment).envFrom ?? []) {
    const cm = byName('ConfigMap', ref.configMapRef.name);
    expect(cm, `ConfigMap ${ref.configMapRef.name}`).toBeDefined();
    for (const [k, v] of Object.entries(cm!.data)) env.set(k, String(v));
  }
  for (const e of container(deployment).env ?? []) env.set(e.name, String(e.value ?? ''));
  return env;
}

function portNumber(c: Doc, port: string | number): number {
  if (typeof port === 'number') return port;
  const named = (c.ports ?? []).find((p: Doc) => p.name === port);
  expect(named, `container port ${port}`).toBeDefined();
  return named.containerPort;
}

describe('k8s manifests', () => {
  it('parse, and there is a Deployment, a PodDisruptionBudget and probes for every role', () => {
    expect(k8sDocs.length).toBeGreaterThan(10);
    for (const role of ROLES) {
      const d = byName('Deployment', role);
      expect(d, role).toBeDefined();
      const pdb = of('PodDisruptionBudget').find((p) => p.spec.selector.matchLabels['app.kubernetes.io/name'] === role);
      expect(pdb, `PDB of ${role}`).toBeDefined();
      expect(d!.spec.template.metadata.labels).toMatchObject(pdb!.spec.selector.matchLabels);
      expect(container(d!).readinessProbe).toBeDefined();
      expect(container(d!).livenessProbe).toBeDefined();
    }
  });

  it('each Deployment runs its own role entry point, compiled, as a non-root user that can write the blob volume', () => {
    for (const role of ROLES) {
      const d = byName('Deployment', role)!;
      expectCompiledEntry(container(d).command, role);
      expect(d.spec.template.spec.securityContext, role).toMatchObject({ runAsNonRoot: true, runAsUser: NODE_UID, fsGroup: NODE_UID });
    }
  });

  it('GPU roles require the CUDA provider they list; the ConfigMap names the fitted ETA thresholds the image carries', () => {
    for (const role of GPU_ROLES) {
      const env = containerEnv(byName('Deployment', role)!);
      expect(env.get('REQUIRE_EXECUTION_PROVIDER'), role).toBe('cuda');
      expect(env.get('EXECUTION_PROVIDERS')!.split(',')).toContain('cuda');
    }
    expect(imagePathOf(byName('ConfigMap', 'moderation-config')!.data.ETA_CONFIG)).toBe('config/eta.json');
  });

  it('the queue prefix in the ConfigMap is the one the code defaults to and has a hash tag', () => {
    const cm = byName('ConfigMap', 'moderation-config')!;
    expect(cm.data.QUEUE_PREFIX).toBe(DEFAULT_QUEUE_PREFIX);
    expect(queuePrefix({ QUEUE_PREFIX: cm.data.QUEUE_PREFIX })).toBe(DEFAULT_QUEUE_PREFIX);
  });

  it('every env variable set in the manifests is one the code reads', () => {
    for (const d of of('Deployment')) {
      if (!ROLES.includes(d.metadata.name)) continue;
      for (const name of containerEnv(d).keys()) expect(codeReads(name) || PLATFORM_ENV.has(name), `${d.metadata.name}: ${name}`).toBe(true);
    }
  });

  it('KEDA ScaledObjects sum wait + prioritized + active of the queue their role consumes', () => {
    const prefix = byName('ConfigMap', 'moderation-config')!.data.QUEUE_PREFIX;
    const redisService = byName('Service', 'redis')!;
    const redisPort = redisService.spec.ports[0].port;
    const scaled = of('ScaledObject');
    expect(scaled.map((s) => s.spec.scaleTargetRef.name).sort()).toEqual(Object.keys(ROLE_STAGE).sort());
    for (const so of scaled) {
      const role = so.spec.scaleTargetRef.name;
      const stage = ROLE_STAGE[role];
      expect(STAGES).toContain(stage);
      expect(byName('Deployment', role)).toBeDefined();
      const keys = kedaQueueKeys(prefix, stage);
      const triggers: Doc[] = so.spec.triggers;
      const listNames = Object.fromEntries(triggers.map((t) => [t.name, t.metadata.listName]));
      expect(listNames).toEqual({ wait: keys.wait, prioritized: keys.prioritized, active: keys.active });
      for (const t of triggers) {
        expect(t.type).toBe('redis');
        expect(t.metadata.address).toBe(`${redisService.metadata.name}:${redisPort}`);
      }
      const formula: string = so.spec.advanced.scalingModifiers.formula;
      expect(
        formula
          .split('+')
          .map((s) => s.trim())
          .sort(),
      ).toEqual(['active', 'prioritized', 'wait']);
      // Scale-to-zero is allowed for the batch GPU roles only.
      if (so.spec.minReplicaCount === 0) expect(GPU_ROLES).toContain(role);
    }
  });

  it('the Redis URL points at the Redis Service, which runs with AOF and noeviction on a volume', () => {
    const url = new URL(byName('ConfigMap', 'moderation-config')!.data.REDIS_URL);
    const svc = byName('Service', 'redis')!;
    expect(url.hostname).toBe(svc.metadata.name);
    expect(Number(url.port)).toBe(svc.spec.ports[0].port);
    const sts = byName('StatefulSet', 'redis')!;
    const args = sts.spec.template.spec.containers[0].args.join(' ');
    expect(args).toContain('--appendonly yes');
    expect(args).toContain('--maxmemory-policy noeviction');
    expect(sts.spec.volumeClaimTemplates[0].metadata.name).toBe('data');
  });

  it('probe paths and ports are the ones the apps serve', () => {
    const api = byName('Deployment', 'intake-api')!;
    const env = containerEnv(api);
    const c = container(api);
    expect(Number(env.get('PORT') ?? DEFAULT_INTAKE_PORT)).toBe(portNumber(c, 'http'));
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    expect(c.livenessProbe.httpGet.path).toBe('/healthz');
    expect(portNumber(c, c.readinessProbe.httpGet.port)).toBe(DEFAULT_INTAKE_PORT);
    const svc = byName('Service', 'intake-api')!;
    expect(svc.spec.ports[0].targetPort).toBe(DEFAULT_INTAKE_PORT);
    for (const role of Object.keys(ROLE_STAGE)) {
      const d = byName('Deployment', role)!;
      const wc = container(d);
      const port = Number(containerEnv(d).get('HEALTH_PORT') ?? DEFAULT_WORKER_HEALTH_PORT);
      for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
        if (!wc[probe]) continue;
        expect(portNumber(wc, wc[probe].httpGet.port), `${role} ${probe}`).toBe(port);
        expect(Object.values(WORKER_PROBE_PATHS)).toContain(wc[probe].httpGet.path);
      }
      expect(wc.readinessProbe.httpGet.path).toBe(WORKER_PROBE_PATHS.readiness);
      expect(d.spec.template.metadata.annotations['prometheus.io/path']).toBe(WORKER_PROBE_PATHS.metrics);
    }
  });

  it('the notifier: its compiled entry, worker probes on HEALTH_PORT, no GPU, no KEDA, a grace period over one delivery attempt', () => {
    const d = byName('Deployment', 'notifier')!;
    expect(d).toBeDefined();
    const c = container(d);
    expectCompiledEntry(c.command, 'notifier');
    expect(d.spec.template.spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: NODE_UID });
    const env = containerEnv(d);
    for (const name of env.keys()) expect(codeReads(name) || PLATFORM_ENV.has(name), `notifier: ${name}`).toBe(true);
    const port = Number(env.get('HEALTH_PORT') ?? DEFAULT_WORKER_HEALTH_PORT);
    expect(portNumber(c, c.readinessProbe.httpGet.port)).toBe(port);
    expect(c.readinessProbe.httpGet.path).toBe(WORKER_PROBE_PATHS.readiness);
    expect(c.livenessProbe.httpGet.path).toBe(WORKER_PROBE_PATHS.liveness);
    expect(c.resources.limits['nvidia.com/gpu']).toBeUndefined();
    expect(of('PodDisruptionBudget').some((p) => p.spec.selector.matchLabels['app.kubernetes.io/name'] === 'notifier')).toBe(true);
    expect(of('ScaledObject').some((s) => s.spec.scaleTargetRef.name === 'notifier')).toBe(false);
    expect(d.spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(Number(env.get('WEBHOOK_TIMEOUT_MS') ?? 10_000));
    const svc = (compose.services as Record<string, Doc>).notifier;
    expectCompiledEntry(svc.command, 'notifier');
    for (const name of Object.keys(svc.environment)) expect(codeReads(name), `compose notifier: ${name}`).toBe(true);
  });

  it('GPU roles request a GPU; grace periods cover the longest job', () => {
    for (const [role, stage] of Object.entries(ROLE_STAGE)) {
      const d = byName('Deployment', role)!;
      const limits = container(d).resources.limits;
      if (GPU_ROLES.includes(role)) expect(limits['nvidia.com/gpu'], role).toBe(1);
      else expect(limits['nvidia.com/gpu']).toBeUndefined();
      expect(d.spec.template.spec.terminationGracePeriodSeconds, role).toBeGreaterThan(LONGEST_JOB_SECONDS[stage]);
    }
  });

  it("every role that runs onnxruntime sizes its sessions' threads to the pod's CPU request", () => {
    // Without a CPU limit the pod has no quota to read, and onnxruntime would start one thread per node core.
    for (const role of Object.keys(ROLE_STAGE)) {
      const c = container(byName('Deployment', role)!);
      const threads = (c.env as { name: string; value: string }[]).find((e) => e.name === 'ORT_INTRA_OP_THREADS')?.value;
      expect(threads, role).toBe(String(c.resources.requests.cpu));
    }
  });
});

describe('docker-compose.yml', () => {
  const services = compose.services as Record<string, Doc>;

  it('Redis runs with AOF and noeviction on a volume', () => {
    const cmd = services.redis.command.join(' ');
    expect(cmd).toContain('--appendonly yes');
    expect(cmd).toContain('--maxmemory-policy noeviction');
    expect(services.redis.volumes.join(' ')).toContain(':/data');
  });

  it('runs the four roles with their entry points, shared blobs, known env and the code queue prefix', () => {
    for (const role of ROLES) {
      const s = services[role];
      expect(s, role).toBeDefined();
      expectCompiledEntry(s.command, role);
      expect(imagePathOf(s.environment.ETA_CONFIG), role).toBe('config/eta.json');
      expect(s.volumes.some((v: string) => v.startsWith('blobs:/var/lib/moderation/blobs'))).toBe(true);
      expect(s.environment.BLOB_DIR).toBe('/var/lib/moderation/blobs');
      expect(s.environment.QUEUE_PREFIX).toBe(DEFAULT_QUEUE_PREFIX);
      expect(new URL(s.environment.REDIS_URL).hostname).toBe('redis');
      for (const name of Object.keys(s.environment)) expect(codeReads(name) || PLATFORM_ENV.has(name), `${role}: ${name}`).toBe(true);
      if (role !== 'intake-api') expect(parseInt(s.stop_grace_period, 10)).toBeGreaterThan(LONGEST_JOB_SECONDS[ROLE_STAGE[role]]);
    }
    expect(services['intake-api'].ports).toContain(`${DEFAULT_INTAKE_PORT}:${services['intake-api'].environment.PORT}`);
    expect(services['intake-api'].healthcheck.test.join(' ')).toContain('/readyz');
  });

  it('names Dockerfiles that exist; the GPU one installs the CUDA EP on a CUDA 12 / cuDNN image', () => {
    expect(existsSync(join(ROOT, services['intake-api'].build.dockerfile))).toBe(true);
    const gpu = readFileSync(join(ROOT, 'Dockerfile.gpu'), 'utf8');
    expect(gpu).toMatch(/FROM nvidia\/cuda:12[.\d]+-cudnn-runtime/);
    expect(gpu).toContain('ONNXRUNTIME_NODE_INSTALL=cuda12');
    // The CPU image skips the CUDA download through .npmrc, which it copies before npm ci.
    expect(readFileSync(join(ROOT, '.npmrc'), 'utf8')).toMatch(/^onnxruntime-node-install=skip$/m);
    expect(readFileSync(join(ROOT, 'Dockerfile'), 'utf8')).toMatch(/COPY [^\n]*\.npmrc[^\n]*\n(.*\n)*RUN npm ci/);
  });

  it('the GPU override gives generator and aligner their own CUDA image, a reserved GPU each, and requires CUDA', () => {
    const gpu = parseAllDocuments(readFileSync(join(ROOT, 'docker-compose.gpu.yml'), 'utf8'))[0].toJS() as Doc;
    expect(Object.keys(gpu.services).sort()).toEqual([...GPU_ROLES].sort());
    expect(gpu.services.generator.build.dockerfile).toBe('Dockerfile.gpu');
    for (const role of GPU_ROLES) {
      const s = gpu.services[role];
      expect(s.image, role).not.toBe(services['intake-api'].image);
      expect(s.deploy.resources.reservations.devices[0]).toMatchObject({ driver: 'nvidia', count: 1, capabilities: ['gpu'] });
      expect(s.environment.REQUIRE_EXECUTION_PROVIDER).toBe('cuda');
      expect(s.environment.EXECUTION_PROVIDERS.split(',')).toContain('cuda');
      for (const name of Object.keys(s.environment)) expect(codeReads(name), `${role}: ${name}`).toBe(true);
    }
  });
});

describe('Dockerfiles', () => {
  const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  for (const file of ['Dockerfile', 'Dockerfile.gpu']) {
    const text = readFileSync(join(ROOT, file), 'utf8').replace(/\\\n/g, ' ');
    const lines = text.split('\n').map((l) => l.trim());
    const stages = lines.filter((l) => l.startsWith('FROM '));

    it(`${file}: multi-stage on a current Node LTS, production dependencies only, non-root`, () => {
      expect(stages.length).toBeGreaterThanOrEqual(2);
      for (const from of stages.filter((l) => /FROM node:/.test(l))) expect(from).toMatch(/FROM node:(24|22)-/);
      expect(text).toMatch(/npm run build/);
      expect(text).toMatch(/npm prune --omit=dev/);
      expect(lines.filter((l) => l.startsWith('USER ')).pop()).toBe('USER node');
      expect(text).not.toContain('@swc-node/register');
    });

    it(`${file}: every path it copies from the context exists and is not excluded by .dockerignore`, () => {
      const copies = lines.filter((l) => l.startsWith('COPY ') && !l.includes('--from='));
      expect(copies.length).toBeGreaterThan(3);
      for (const copy of copies) {
        const sources = copy.split(/\s+/).slice(1, -1);
        for (const src of sources) {
          expect(existsSync(join(ROOT, src)), `${file}: ${copy}`).toBe(true);
          expect(ignored.includes(src) || ignored.includes(src.split('/')[0]), `${file}: ${src} is in .dockerignore`).toBe(false);
        }
      }
      expect(
        copies.some((c) => /^COPY config config$/.test(c)),
        'the fitted config/',
      ).toBe(true);
    });

    it(`${file}: its command is a compiled entry point and the env it sets is read by the code`, () => {
      const cmd = JSON.parse(
        lines
          .filter((l) => l.startsWith('CMD '))
          .pop()!
          .slice(4),
      ) as string[];
      expectCompiledEntry(cmd, /dist\/apps\/([a-z-]+)\/src\/main\.js/.exec(cmd[1])![1]);
      const env = [...text.matchAll(/^ENV (.+)$/gm)].flatMap((m) => [...m[1].matchAll(/([A-Z_][A-Z0-9_]*)=(\S*)/g)].map((v) => [v[1], v[2]]));
      for (const [name] of env) expect(codeReads(name) || PLATFORM_ENV.has(name), `${file}: ${name}`).toBe(true);
      expect(imagePathOf(Object.fromEntries(env).ETA_CONFIG)).toBe('config/eta.json');
    });
  }
});
