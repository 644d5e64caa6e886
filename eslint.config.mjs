// @ts-check
/**
 * `npm run lint`. Module boundaries (issue 10): an app imports libs (through @libs/<name>), never another app's
 * files; a lib never imports an app. modctl, the operator CLI that composes roles (`modctl demo`), may import
 * another app's public entry (apps/<role>/src/index.ts) and nothing deeper. Tests and benches may import anything.
 * Otherwise typescript-eslint's recommended rules, less no-explicit-any (JSON replies and configs in tests and
 * pack loaders are typed `any` on purpose).
 */
import tseslint from 'typescript-eslint';

export const APPS = ['intake-api', 'generator', 'evaluator', 'aligner', 'notifier', 'modctl'];

const alt = (names) => names.join('|');

/** no-restricted-imports patterns for a file in apps/<app>/src. */
export function appImportPatterns(app) {
  const others = APPS.filter((a) => a !== app);
  // modctl composes roles: another app's src/ entry (index) is allowed, anything deeper is not.
  const reachable = app === 'modctl' ? '(?!src(/index(\\.ts)?)?$)' : '';
  return [
    {
      regex: `^(\\.\\./)+(${alt(others)})/${reachable}`,
      message:
        app === 'modctl'
          ? "modctl may import another app only through its public entry ('<app>/src'); move what is shared into a lib"
          : 'an app imports libs (@libs/<name>), never another app; move what is shared into a lib',
    },
    { regex: '(^|/)apps(/|$)', message: 'an app imports libs (@libs/<name>), never another app; move what is shared into a lib' },
    { regex: '^(\\.\\./)+libs/', message: "import a lib through its alias '@libs/<name>', not its files" },
  ];
}

export const LIB_IMPORT_PATTERNS = [
  { regex: '(^|/)apps(/|$)', message: 'a lib never imports an app' },
  { regex: `^(\\.\\./)+(${alt(APPS)})/`, message: 'a lib never imports an app' },
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'models/**', 'data/**', 'tools/**', '**/*.js', '**/*.cjs', '**/*.mjs'] },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommended],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // `let x; ... closure uses x ...; x = ...`: the intake's metrics are read by handlers registered before they exist.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  ...APPS.map((app) => ({
    files: [`apps/${app}/src/**/*.ts`],
    rules: { 'no-restricted-imports': ['error', { patterns: appImportPatterns(app) }] },
  })),
  {
    files: ['libs/*/src/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: LIB_IMPORT_PATTERNS }] },
  },
);
