/**
 * Why `model prepare` refused a decoder. The layer is a field, not only part of the message, so `--json` callers
 * (and tests) can tell which layer broke without parsing prose; `null` when no single layer is at fault.
 */
export class DecoderStructureError extends Error {
  readonly layer: number | null;
  readonly reason: string;

  constructor(reason: string, layer?: number) {
    super(layer === undefined ? reason : `layer ${layer}: ${reason}`);
    this.name = 'DecoderStructureError';
    this.layer = layer ?? null;
    this.reason = reason;
  }
}
