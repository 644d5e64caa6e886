/**
 * The module-boundary lint rule (eslint.config.mjs) bites: an app importing another app's files, or a lib importing
 * an app, is an error, through ESLint's Node API on in-memory snippets placed at paths inside the repository; and
 * the apps and libs as they are pass it.
 */
import { resolve } from 'node:path';
import { ESLint } from 'eslint';
import { beforeAll, describe, expect, it } from 'vitest';

const root = resolve(__dirname, '..');
let eslint: ESLint;

beforeAll(() => {
  eslint = new ESLint({ cwd: root });
});

/** The no-restricted-imports messages ESLint reports for `code` as if it were the file at `path`. */
async function boundaryErrors(path: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: resolve(root, path) });
  return result.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('module boundaries lint rule', () => {
  it('an app importing another app by a relative path is an error', async () => {
    const errors = await boundaryErrors(
      'apps/aligner/src/snippet.ts',
      "import { loadImage } from '../../generator/src/generation.service';\nexport { loadImage };\n",
    );
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/never another app/);
    // `export ... from` and nested folders count too.
    expect(await boundaryErrors('apps/generator/src/deep/snippet.ts', "export { EVALUATOR_CONFIG } from '../../../evaluator/src/config';\n")).toHaveLength(1);
  });

  it('an app importing any apps/* path is an error', async () => {
    expect(
      await boundaryErrors('apps/evaluator/src/snippet.ts', "import { AlignerModule } from 'apps/aligner/src/aligner.module';\nexport { AlignerModule };\n"),
    ).toHaveLength(1);
    expect(await boundaryErrors('apps/intake-api/src/snippet.ts', "import { x } from '../../../apps/generator/src/config';\nexport { x };\n")).toHaveLength(1);
  });

  it('a lib importing an app is an error', async () => {
    expect(
      await boundaryErrors(
        'libs/worker/src/snippet.ts',
        "import { GENERATOR_CONFIG } from '../../../apps/generator/src/config';\nexport { GENERATOR_CONFIG };\n",
      ),
    ).toHaveLength(1);
  });

  it('libs through their alias, and the app itself, are fine; a lib by a relative path is not', async () => {
    const ok = "import { loadImage } from '@libs/worker';\nimport { GENERATOR_CONFIG } from './config';\nexport { loadImage, GENERATOR_CONFIG };\n";
    expect(await boundaryErrors('apps/generator/src/snippet.ts', ok)).toEqual([]);
    expect(
      await boundaryErrors('apps/generator/src/snippet.ts', "import { loadImage } from '../../../libs/worker/src/job-image';\nexport { loadImage };\n"),
    ).toHaveLength(1);
  });

  it("modctl may import another app's public entry, nothing deeper", async () => {
    expect(
      await boundaryErrors('apps/modctl/src/commands/snippet.ts', "import { GeneratorModule } from '../../../generator/src';\nexport { GeneratorModule };\n"),
    ).toEqual([]);
    const deep = await boundaryErrors(
      'apps/modctl/src/commands/snippet.ts',
      "import { GeneratorModule } from '../../../generator/src/generator.module';\nexport { GeneratorModule };\n",
    );
    expect(deep).toHaveLength(1);
    expect(deep[0]).toMatch(/public entry/);
  });

  it('the apps and libs as they are respect the boundaries', async () => {
    const results = await eslint.lintFiles(['apps/*/src/**/*.ts', 'libs/*/src/**/*.ts']);
    const violations = results.flatMap((r) =>
      r.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => `${r.filePath}:${m.line} ${m.message}`),
    );
    expect(violations).toEqual([]);
  });
});
