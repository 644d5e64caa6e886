/** How modctl reports a failure: a line of text, or with --json one JSON object `{ error: { code, message, ... } }`. */
export function wantsJson(argv: readonly string[]): boolean {
  return argv.includes('--json');
}

export function printError(json: boolean, code: string, message: string, extra: Record<string, unknown> = {}): void {
  if (json) console.error(JSON.stringify({ error: { code, message, ...extra } }));
  else console.error(message);
}
