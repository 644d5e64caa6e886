/**
 * modctl model prepare <pack> [--force] [--dry-run] [--json]
 *   Writes onnx/decoder_model_merged_revisable.onnx (+ .json manifest) beside the pack's decoder.
 * modctl model verify <pack> [--json]
 *   Checks that the revisable decoder still matches the decoder it was prepared from.
 * With --json, success is one JSON document on stdout and a failure one `{ error: {...} }` on stderr; a refused
 * decoder's error carries `layer` (null when no single layer is at fault), `reason`, `pack` and `written: false`.
 */
import { printError } from '../output';
import { AlreadyRevisableError, DecoderStructureError, PrepareReport, prepareRevisableDecoder, verifyRevisableDecoder } from '@libs/onnx-graph';

export const summary = 'model prepare <pack> | model verify <pack>: revisable decoder (revision inputs + taps)';

const USAGE = 'usage: modctl model prepare <pack> [--force] [--dry-run] [--json]\n       modctl model verify <pack> [--json]';

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
  const l = info.layout;
  if (l) {
    console.log(
      `  layout: attention ${l.attention_op} -> ${l.attention_output} (o_proj ${l.o_proj_op}), MLP -> ${l.mlp_output}, ` +
        `qkv ${l.qkv}${l.qkv_bias ? ' with bias' : ''}, activations ${l.activation_type}` +
        (l.sliding_window_layers.length ? `, sliding-window layers ${l.sliding_window_layers.join(',')}` : ''),
    );
  }
  for (const p of info.points) {
    const post = p.post_attention_norm ? `, renormalised by ${p.post_attention_norm} before the residual` : '';
    console.log(
      `  layer ${p.layer}: head revision + tap_head on '${p.o_proj_input}' (input of ${p.o_proj}${post}); ` +
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
    if (json && check.ok)
      console.log(JSON.stringify({ ok: true, pack, source_sha256: check.info!.source_sha256, revisable_sha256: check.info!.revisable_sha256 }));
    else if (json) printError(true, check.info ? 'stale' : 'not_prepared', `${pack}: ${check.reason}`, { pack, ok: false });
    else console.log(check.ok ? `${pack}: revisable decoder matches source sha256 ${check.info!.source_sha256}` : `${pack}: ${check.reason}`);
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
      const fields = err instanceof DecoderStructureError ? { layer: err.layer, reason: err.reason } : { layer: null, reason: err.message };
      printError(
        json,
        err instanceof AlreadyRevisableError ? 'already_revisable' : 'decoder_structure',
        `model prepare ${pack}: refused, nothing written: ${err.message}`,
        { ...fields, pack, written: false },
      );
      return 1;
    }
    throw err;
  }
}
