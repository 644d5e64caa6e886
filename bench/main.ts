/**
 * `npm run bench -- <name> [options]`: runs bench/<name>.ts, which exports `run(argv): Promise<void>`.
 * Benchmarks print ratios taken within one run, because this machine is noisy.
 */
import 'reflect-metadata';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  const file = name ? join(__dirname, `${name}.ts`) : '';
  if (!name || name === 'main' || !existsSync(file)) {
    const names = readdirSync(__dirname).filter((f) => f.endsWith('.ts') && f !== 'main.ts' && !f.startsWith('_'));
    console.error(`usage: npm run bench -- <name>\n\nbenchmarks: ${names.map((f) => f.replace(/\.ts$/, '')).join(', ')}`);
    process.exitCode = 2;
    return;
  }
  const bench = (await import(file)) as { run(argv: string[]): Promise<void> };
  await bench.run(rest);
}

main(process.argv.slice(2)).catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
