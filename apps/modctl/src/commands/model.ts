/**
 * modctl model prepare <pack> [--force] [--dry-run] [--json]
 *   Writes onnx/decoder_model_merged_revisable.onnx (+ .json manifest) beside the pack's decoder.
 * modctl model verify <pack>
 *   Checks that the revisable decoder still matches the decoder it was prepared from.
 */
import { printError } from '../output';
import { AlreadyRevisableError, DecoderStructureError, PrepareReport, prepareRevisableDecoder, verifyRevisableDecoder } from '@libs/onnx-graph';

export const summary = 'model prepare <pack> | model verify <pack>: revisable decoder (revision inputs + taps)';

const USAGE = 'usage: modctl model prepare <pack> [--force] [--dry-run] [--json]\n       modctl model verify <pack>';

function printPrepare(report: PrepareReport): void {
  const { info } = report;
  if (report.status === 'up-to-date') {
    console.log(`${report.revisablePath} is up to date (source sha256 ${info.source_sha256}); nothing to do`);
    return;
  }
  const verb = report.status === 'dry-run' ? 'would add' : 'added';
  console.log(
    `${info.source} (sha256 ${info.source_sha256}): ${info.layers} layers, hidden ${info.hidden}, ` +
      `${info.heads} heads x ${info.head_dim}, residual style '${info.residual_style}'`,
  );
  for (const p of info.points) {
    console.log(
      `  layer ${p.layer}: head revision + tap_head on '${p.o_proj_input}' (input of ${p.o_proj}); ` +
        `layer revision + tap_layer after ${p.residual} -> '${p.residual_tensor}'`,
    );
  }
  console.log(`${verb} inputs revision_layer, revision_head, revision_mask and outputs tap_layer, tap_head`);
  if (report.status === 'written') {
    console.log(`wrote ${report.revisablePath} (sha256 ${info.revisable_sha256}) and ${report.manifestPath} in ${report.ms} ms`);
  }
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const flags = new Set(rest.filter((a) => a.startsWith('--')));
  const positional = rest.filter((a) => !a.startsWith('--'));
  const unknown = [...flags].filter((f) => !['--force', '--dry-run', '--json'].includes(f));
  const json = flags.has('--json');
  if (!sub || positional.length !== 1 || unknown.length) {
    printError(json, 'usage', unknown.length ? `unknown option ${unknown.join(', ')}\n${USAGE}` : USAGE);
    return 2;
  }
  const pack = positional[0];
  if (sub === 'verify') {
    const check = await verifyRevisableDecoder(pack);
    console.log(check.ok ? `${pack}: revisable decoder matches source sha256 ${check.info!.source_sha256}` : `${pack}: ${check.reason}`);
    return check.ok ? 0 : 1;
  }
  if (sub !== 'prepare') {
    printError(json, 'usage', `unknown subcommand '${sub}'\n${USAGE}`);
    return 2;
  }
  try {
    const report = await prepareRevisableDecoder(pack, { force: flags.has('--force'), dryRun: flags.has('--dry-run') });
    if (json) console.log(JSON.stringify({ status: report.status, ms: report.ms, ...report.info }, null, 2));
    else printPrepare(report);
    return 0;
  } catch (err) {
    if (err instanceof DecoderStructureError || err instanceof AlreadyRevisableError) {
      printError(
        json,
        err instanceof AlreadyRevisableError ? 'already_revisable' : 'decoder_structure',
        `model prepare ${pack}: refused, nothing written: ${err.message}`,
      );
      return 1;
    }
    throw err;
  }
}
