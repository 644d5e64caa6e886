/**
 * modctl: the operator's command line (model prepare, calibrate, merge, demo).
 * Each command lives in commands/<name>.ts and exports `run(argv: string[]): Promise<number>`
 * (the exit code) and a one-line `summary`. With --json anywhere on the line, failures are one JSON object on stderr,
 * `{ "error": { "code", "message" } }`, as the commands print their own.
 */
import 'reflect-metadata';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { printError, wantsJson } from './output';

interface Command {
  summary: string;
  run(argv: string[]): Promise<number>;
}

const commandsDir = join(__dirname, 'commands');

function commandNames(): string[] {
  return readdirSync(commandsDir)
    .filter((f) => /\.(ts|js)$/.test(f) && !f.endsWith('.d.ts') && !f.includes('.test.'))
    .map((f) => f.replace(/\.(ts|js)$/, ''))
    .sort();
}

async function load(name: string): Promise<Command | undefined> {
  const file = ['ts', 'js'].map((ext) => join(commandsDir, `${name}.${ext}`)).find(existsSync);
  return file ? ((await import(file)) as Command) : undefined;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const command = name && !name.startsWith('-') ? await load(name) : undefined;
  if (!command && name && !name.startsWith('-') && wantsJson(argv)) {
    printError(true, 'unknown_command', `unknown command '${name}'; commands: ${commandNames().join(', ')}`);
    return 2;
  }
  if (!command) {
    console.error('usage: modctl <command> [options]\n\ncommands:');
    for (const n of commandNames()) console.error(`  ${n.padEnd(12)} ${(await load(n))?.summary ?? ''}`);
    return name && name !== '--help' && name !== '-h' ? 2 : 0;
  }
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    const code = (err as { code?: unknown } | undefined)?.code;
    printError(wantsJson(process.argv), typeof code === 'string' ? code : 'error', err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
