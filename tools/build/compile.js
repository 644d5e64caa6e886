#!/usr/bin/env node
/**
 * `npm run build`: compiles apps and libs to JavaScript under dist/ with tsc (tsconfig.build.json), then
 *  - rewrites the `@libs/<name>` path aliases (tsconfig "paths") into relative requires, since tsc leaves them as
 *    written and Node cannot resolve them (microsoft/TypeScript#10866: paths are for resolution, not emit);
 *  - copies the non-TypeScript files the code reads beside itself (libs/onnx-graph/src/onnx.proto).
 * The output runs with plain `node dist/apps/<app>/src/main.js`: no TypeScript compiler or swc at run time.
 */
const { execFileSync } = require('node:child_process');
const { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const { dirname, join, relative, resolve } = require('node:path');

const root = resolve(__dirname, '..', '..');
const out = join(root, 'dist');
const ASSETS = ['libs/onnx-graph/src/onnx.proto'];

function jsFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    return e.isDirectory() ? jsFiles(path) : e.name.endsWith('.js') ? [path] : [];
  });
}

rmSync(out, { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });

const { compilerOptions } = JSON.parse(readFileSync(join(root, 'tsconfig.json'), 'utf8'));
// "@libs/vlm": ["libs/vlm/src/index.ts"] -> dist/libs/vlm/src/index.js
const aliases = new Map(Object.entries(compilerOptions.paths).map(([name, [target]]) => [name, join(out, target.replace(/\.ts$/, '.js'))]));
let rewritten = 0;
for (const file of jsFiles(out)) {
  const text = readFileSync(file, 'utf8');
  const next = text.replace(/require\("(@libs\/[a-z-]+)"\)/g, (whole, name) => {
    const target = aliases.get(name);
    if (!target) throw new Error(`${relative(root, file)}: no path alias for ${name} in tsconfig.json`);
    let rel = relative(dirname(file), target).replace(/\\/g, '/');
    if (!rel.startsWith('.')) rel = `./${rel}`;
    rewritten++;
    return `require("${rel}")`;
  });
  if (next !== text) writeFileSync(file, next);
}
for (const asset of ASSETS) {
  const target = join(out, asset);
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(join(root, asset), target);
}
for (const [name, target] of aliases) if (!existsSync(target)) throw new Error(`alias ${name}: ${relative(root, target)} was not emitted`);
console.log(`dist/: ${rewritten} alias requires rewritten, ${ASSETS.length} asset(s) copied`);
