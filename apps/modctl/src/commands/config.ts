/**
 * modctl config [--role <role>] [--json]
 *   The configuration a role would start with: every variable of the settings table (@libs/settings) that the role
 *   reads, its resolved value and where it came from (env or default); secrets (API keys, the admin digest, the Redis
 *   password) redacted. Exits 1 naming each bad variable, as the role itself would at start-up.
 */
import { loadSettings, redact, ROLES, SettingsError, type ResolvedSetting, type Role } from '@libs/settings';
import { printError, wantsJson } from '../output';

export const summary = 'config [--role <role>] [--json]: resolved settings (env or default), secrets redacted';

const USAGE = `usage: modctl config [--role ${ROLES.join('|')}] [--json]`;

function parse(argv: string[]): { role?: Role; json: boolean } | string {
  let role: Role | undefined;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    if (flag === '--json') json = true;
    else if (flag === '--role') {
      const value = inline ?? argv[++i];
      if (!value || !(ROLES as readonly string[]).includes(value)) return `--role must be one of ${ROLES.join(', ')}, got '${value ?? ''}'`;
      role = value as Role;
    } else return `unknown option '${argv[i]}'`;
  }
  return { role, json };
}

/** What is printed for one setting: secrets as redacted text, everything else as its parsed value. */
function shown(s: ResolvedSetting): unknown {
  return s.secret ? redact(s, s.raw) : s.value;
}

export async function run(argv: string[]): Promise<number> {
  const args = parse(argv);
  const json = wantsJson(argv);
  if (typeof args === 'string') {
    printError(json, 'usage', `${args}\n${USAGE}`);
    return 2;
  }
  let loaded;
  try {
    loaded = loadSettings(args.role, process.env);
  } catch (err) {
    if (!(err instanceof SettingsError)) throw err;
    printError(json, err.code, err.message, { role: args.role ?? null, issues: err.issues });
    return 1;
  }
  if (json) {
    const settings = loaded.settings.map((s) => ({
      name: s.name,
      value: shown(s) ?? null,
      source: s.source,
      default: s.default ?? null,
      ...(s.defaultNote ? { defaultNote: s.defaultNote } : {}),
      roles: s.roles,
      ...(s.secret ? { secret: true } : {}),
      description: s.description,
    }));
    console.log(JSON.stringify({ role: args.role ?? null, settings }, null, 2));
    return 0;
  }
  const width = Math.max(...loaded.settings.map((s) => s.name.length));
  for (const s of loaded.settings) {
    const value = shown(s);
    const text = value === undefined ? `(unset: ${s.defaultNote ?? 'none'})` : Array.isArray(value) ? value.join(',') : String(value);
    console.log(`${s.name.padEnd(width)}  ${text}  [${s.source}]${args.role ? '' : `  ${s.roles.join(',')}`}`);
  }
  return 0;
}
