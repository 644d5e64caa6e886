/**
 * modctl merge --a <pack> --b <pack> --weight w [--layers 0,1,...] --out <pack> [--force]
 *   out decoder = (1-w)*A + w*B over float initializers; the rest of the pack is a copy of A.
 */
import { DecoderStructureError, MergeMismatchError, mergeDecoders } from '@libs/onnx-graph';

export const summary = 'merge --a <pack> --b <pack> --weight w [--layers 0,1] --out <pack>: interpolate decoder weights';

const USAGE = 'usage: modctl merge --a <pack> --b <pack> --weight w [--layers 0,1,...] --out <pack> [--force]';

function parse(argv: string[]): Record<string, string | true> | undefined {
  const out: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) return undefined;
    const [key, inline] = a.slice(2).split('=', 2);
    if (key === 'force') out[key] = true;
    else if (inline !== undefined) out[key] = inline;
    else if (i + 1 < argv.length) out[key] = argv[++i];
    else return undefined;
  }
  return out;
}

export async function run(argv: string[]): Promise<number> {
  const args = parse(argv);
  const known = ['a', 'b', 'weight', 'layers', 'out', 'force'];
  if (!args || !args.a || !args.b || !args.out || args.weight === undefined || Object.keys(args).some((k) => !known.includes(k))) {
    console.error(USAGE);
    return 2;
  }
  const weight = Number(args.weight);
  if (!Number.isFinite(weight) || String(args.weight).trim() === '') {
    console.error(`--weight must be a number, got '${args.weight}'\n${USAGE}`);
    return 2;
  }
  let layers: number[] | undefined;
  if (typeof args.layers === 'string') {
    layers = args.layers.split(',').map((s) => Number(s.trim()));
    if (layers.some((l) => !Number.isInteger(l) || l < 0)) {
      console.error(`--layers must be comma-separated layer indices, got '${args.layers}'`);
      return 2;
    }
  }
  if (weight < 0 || weight > 1) console.error(`warning: --weight ${weight} is outside [0, 1]: this extrapolates`);
  try {
    const r = await mergeDecoders(String(args.a), String(args.b), String(args.out), { weight, layers, force: args.force === true });
    console.log(
      `merged ${r.merged.length} float initializers with w=${weight}${layers ? ` (layers ${layers.join(',')})` : ''}; ` +
        `${r.identical} equal in A and B, ${r.keptFromA} kept from A, ${r.nonFloat} non-float copied`,
    );
    console.log(`wrote ${r.outDir} (decoder sha256 ${r.decoderSha256})${r.revisable ? ' and prepared its revisable decoder' : ''} in ${r.ms} ms`);
    return 0;
  } catch (err) {
    if (err instanceof MergeMismatchError || err instanceof DecoderStructureError) {
      console.error(`merge refused, nothing written: ${err.message}`);
      return 1;
    }
    throw err;
  }
}
