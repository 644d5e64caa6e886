/**
 * Decoders built in code with the node patterns of the layouts people ship, KV cache included, in both export
 * styles (optimum / torch.onnx and onnxruntime-genai):
 * - Gemma 2/3 sandwich norms: post_attention_layernorm on o_proj's output and post_feedforward_layernorm on the
 *   MLP's output before the residual adds; Gemma's (1 + w) RMSNorm; q/k norms (Gemma 3); attention softcapping
 *   (Gemma 2); sliding-window layers; head_dim != hidden / heads;
 * - fused QKV (Phi-3 qkv_proj, sliced in torch.onnx exports, packed into GroupQueryAttention in genai ones) and
 *   fused gate_up_proj;
 * - q/k/v projection biases (Qwen2);
 * - MatMulNBits (q4) for every projection;
 * - float16 graphs, with the float32 up-casts torch puts around norms and softmax (a mixed-precision graph).
 */
import { DataType, GraphBuilder, ModelProto, TensorProto, floatTensor, seededRandom, uint8Tensor, withFloatValues } from '@libs/onnx-graph';

export interface LayoutSpec {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  intermediate: number;
  seed: number;
}

/** heads * head_dim = 32 != hidden = 24, as in Gemma (2560 hidden, 8 x 256). */
export const LAYOUT_SPEC: LayoutSpec = { layers: 3, hidden: 24, heads: 4, kvHeads: 2, headDim: 8, vocab: 11, intermediate: 40, seed: 5 };

export interface LayoutOptions {
  style: 'optimum' | 'genai';
  /** Gemma 2/3 post-attention and post-feedforward norms (and Gemma's 1 + w gamma). */
  sandwich?: boolean;
  /** genai Gemma: the attention output joins the stream through a plain Add (pre_feedforward norm unfused). */
  attentionAdd?: boolean;
  /** Gemma 3 q_norm / k_norm on each head. */
  qkNorm?: boolean;
  /** Gemma 2 attention logit softcapping. */
  softcap?: number;
  /** Phi-3: one qkv_proj (and one gate_up_proj). */
  fusedQkv?: boolean;
  /** Qwen2: biases on q, k and v. */
  qkvBias?: boolean;
  /** Every projection, lm_head included, MatMulNBits 4-bit. */
  nbits?: boolean;
  /** Layers l with l % 2 === 0 attend to the last `window` positions only (Gemma's local layers). */
  slidingWindow?: number;
  float16?: boolean;
}

export const layoutName = (o: LayoutOptions): string =>
  [
    o.style,
    o.sandwich && 'sandwich',
    o.attentionAdd && 'attention-add',
    o.qkNorm && 'qk-norm',
    o.softcap && 'softcap',
    o.fusedQkv && 'fused-qkv',
    o.qkvBias && 'qkv-bias',
    o.nbits && 'q4',
    o.slidingWindow && 'sliding',
    o.float16 && 'fp16',
  ]
    .filter(Boolean)
    .join(' ');

const F = DataType.FLOAT;
const MS = 'com.microsoft';

class LayoutBuilder {
  readonly b = new GraphBuilder();
  readonly rnd: (s?: number) => number;
  /** The activation type. */
  readonly act: number;
  private n = 0;

  constructor(
    readonly spec: LayoutSpec,
    readonly o: LayoutOptions,
  ) {
    this.rnd = seededRandom(spec.seed + (o.style === 'genai' ? 1 : 0));
    this.act = o.float16 ? DataType.FLOAT16 : F;
  }

  private tensor(name: string, dims: number[], values: number[], type: number): string {
    const t: TensorProto = floatTensor(name, dims, values);
    return this.b.init(type === F ? t : withFloatValues({ ...t, data_type: type }, Float64Array.from(values)));
  }

  /** A constant in the activation type (weights, scales, mask values). */
  c(values: number[], dims: number[] = []): string {
    return this.tensor(`c${this.n++}`, dims, values, this.act);
  }

  /** A float32 constant (inside up-cast norms). */
  f32(values: number[], dims: number[] = []): string {
    return this.tensor(`f${this.n++}`, dims, values, F);
  }

  ints(values: number[], dims: number[] = [values.length]): string {
    return this.b.ints(`i${this.n++}`, dims, values);
  }

  random(name: string, dims: number[], scale: number, type = this.act): string {
    const count = dims.reduce((a, d) => a * d, 1);
    return this.tensor(
      name,
      dims,
      Array.from({ length: count }, () => this.rnd(scale)),
      type,
    );
  }

  op(opType: string, inputs: string[], name: string, attrs?: Parameters<GraphBuilder['op']>[3], domain?: string): string {
    return this.b.op(opType, inputs, name, attrs, domain);
  }

  /** 4-bit MatMulNBits weights (block 16, default zero point 8) for a [k, n] matrix; k a multiple of 8. */
  private nbits(name: string, k: number, n: number): string[] {
    const block = 16;
    const blocks = Math.ceil(k / block);
    const packed = new Uint8Array(n * blocks * (block / 2));
    const scales: number[] = [];
    for (let col = 0; col < n; col++) {
      for (let kb = 0; kb < blocks; kb++) {
        scales.push(0.02 + Math.abs(this.rnd(0.02)));
        for (let i = 0; i < block; i += 2) {
          const lo = Math.floor((this.rnd() + 1) * 8) & 15;
          const hi = Math.floor((this.rnd() + 1) * 8) & 15;
          packed[(col * blocks + kb) * (block / 2) + i / 2] = lo | (hi << 4);
        }
      }
    }
    return [this.b.init(uint8Tensor(`${name}.qweight`, [n, blocks, block / 2], packed)), this.tensor(`${name}.scales`, [n * blocks], scales, this.act)];
  }

  /** x [.., k] x W [k, n] (+ bias): MatMul or MatMulNBits, as the export would write it. */
  proj(x: string, k: number, n: number, name: string, weight: string, bias = false): string {
    const out = this.o.nbits
      ? this.op('MatMulNBits', [x, ...this.nbits(weight, k, n)], `${name}/MatMulNBits`, { K: k, N: n, bits: 4, block_size: 16 }, MS)
      : this.op('MatMul', [x, this.random(`${weight}.weight`, [k, n], 0.3)], `${name}/MatMul`);
    return bias ? this.op('Add', [this.random(`${weight}.bias`, [n], 0.1), out], `${name}/Add`) : out;
  }

  /** RMSNorm as torch.onnx writes it: up-cast to float32 in a float16 graph, Gemma's (1 + w) or LLaMA's w. */
  rmsNorm(x: string, width: number, name: string, weight: string): string {
    const gemma = !!this.o.sandwich;
    const half = this.act !== F;
    const xf = half ? this.op('Cast', [x], `${name}/Cast`, { to: F }) : x;
    const pow = this.op('Pow', [xf, this.f32([2])], `${name}/Pow`);
    const mean = this.op('ReduceMean', [pow], `${name}/ReduceMean`, { axes: [-1], keepdims: 1 });
    const add = this.op('Add', [mean, this.f32([1e-6])], `${name}/Add`);
    const inv = this.op('Reciprocal', [this.op('Sqrt', [add], `${name}/Sqrt`)], `${name}/Reciprocal`);
    const normed = this.op('Mul', [xf, inv], `${name}/Mul`);
    // Gemma keeps w and multiplies by (1 + w) (a constant subgraph); LLaMA stores gamma itself.
    const gamma = gemma
      ? this.op('Add', [this.f32([1]), this.random(weight, [width], 0.1, F)], `${name}/Add_1`)
      : this.tensor(
          weight,
          [width],
          Array.from({ length: width }, () => 1 + this.rnd(0.1)),
          F,
        );
    const out = this.op('Mul', [normed, gamma], `${name}/Mul_1`);
    return half ? this.op('Cast', [out], `${name}/Cast_1`, { to: this.act }) : out;
  }

  /** SimplifiedLayerNormalization (genai): gamma already holds Gemma's 1 + w. */
  simplifiedNorm(x: string, width: number, name: string, weight: string): string {
    const gamma = this.tensor(
      weight,
      [width],
      Array.from({ length: width }, () => 1 + this.rnd(0.1)),
      this.act,
    );
    return this.op('SimplifiedLayerNormalization', [x, gamma], `${name}/LayerNorm`, { axis: -1, epsilon: { float: 1e-6 }, stash_type: 1 });
  }

  skipNorm(branch: string, residual: string, name: string, weight: string, branchFirst: boolean, withSum = true): { normed: string; sum: string } {
    const { hidden } = this.spec;
    const gamma = this.tensor(
      weight,
      [hidden],
      Array.from({ length: hidden }, () => 1 + this.rnd(0.1)),
      this.act,
    );
    const outs = this.b.node('SkipSimplifiedLayerNormalization', branchFirst ? [branch, residual, gamma] : [residual, branch, gamma], `${name}/SkipLayerNorm`, {
      attrs: { epsilon: { float: 1e-6 } },
      domain: MS,
      outputs: withSum ? [`${name}/output_0`, '', '', `${name}/output_3`] : [`${name}/output_0`],
    });
    return { normed: outs[0], sum: outs[3] };
  }

  mlp(x: string, p: string, w: string): string {
    const { hidden, intermediate: m } = this.spec;
    let gate: string;
    let up: string;
    if (this.o.fusedQkv) {
      const gu = this.proj(x, hidden, 2 * m, `${p}/gate_up_proj`, `${w}.mlp.gate_up_proj`);
      gate = this.op('Slice', [gu, this.ints([0]), this.ints([m]), this.ints([-1])], `${p}/Slice`);
      up = this.op('Slice', [gu, this.ints([m]), this.ints([2 * m]), this.ints([-1])], `${p}/Slice_1`);
    } else {
      gate = this.proj(x, hidden, m, `${p}/gate_proj`, `${w}.mlp.gate_proj`);
      up = this.proj(x, hidden, m, `${p}/up_proj`, `${w}.mlp.up_proj`);
    }
    const act = this.op('Mul', [gate, this.op('Sigmoid', [gate], `${p}/act_fn/Sigmoid`)], `${p}/act_fn/Mul`);
    return this.proj(this.op('Mul', [act, up], `${p}/Mul`), m, hidden, `${p}/down_proj`, `${w}.mlp.down_proj`);
  }

  io(positionIds: boolean): void {
    const { hidden, layers, kvHeads, headDim, vocab } = this.spec;
    this.b.input('inputs_embeds', this.act, ['batch_size', 'sequence_length', hidden]);
    this.b.input('attention_mask', DataType.INT64, ['batch_size', 'total_sequence_length']);
    if (positionIds) this.b.input('position_ids', DataType.INT64, ['batch_size', 'sequence_length']);
    this.b.output('logits', this.act, ['batch_size', 'sequence_length', vocab]);
    for (let l = 0; l < layers; l++) {
      for (const kind of ['key', 'value']) {
        this.b.input(`past_key_values.${l}.${kind}`, this.act, ['batch_size', kvHeads, 'past_sequence_length', headDim]);
        this.b.output(`present.${l}.${kind}`, this.act, ['batch_size', kvHeads, 'total_sequence_length', headDim]);
      }
    }
  }

  lmHead(x: string): void {
    const { hidden, vocab } = this.spec;
    const logits = this.proj(x, hidden, vocab, '/lm_head', 'lm_head');
    this.b.node('Identity', [logits], '/lm_head/Identity', { outputs: ['logits'] });
  }

  isSliding(l: number): boolean {
    return !!this.o.slidingWindow && l % 2 === 0;
  }
}

function optimum(spec: LayoutSpec, o: LayoutOptions): ModelProto {
  const t = new LayoutBuilder(spec, o);
  const { hidden, heads, kvHeads, headDim: hd } = spec;
  t.io(true);

  // Padding + causal (and sliding-window) bias [batch, 1, seq, total], built from shapes as torch.onnx does.
  const padBias = t.op(
    'Mul',
    [t.op('Sub', [t.op('Cast', ['attention_mask'], '/model/Cast', { to: t.act }), t.c([1])], '/model/Sub'), t.c([1e4])],
    '/model/Mul',
  );
  const padBias4 = t.op('Unsqueeze', [padBias, t.ints([1, 2])], '/model/Unsqueeze');
  const seq = t.op('Gather', [t.op('Shape', ['inputs_embeds'], '/model/Shape'), t.ints([1], [])], '/model/Gather', { axis: 0 });
  const total = t.op('Gather', [t.op('Shape', ['attention_mask'], '/model/Shape_1'), t.ints([1], [])], '/model/Gather_1', { axis: 0 });
  const past = t.op('Sub', [total, seq], '/model/Sub_1');
  const qPos = t.op('Unsqueeze', [t.op('Range', [past, total, t.ints([1], [])], '/model/Range'), t.ints([1])], '/model/Unsqueeze_1');
  const kPos = t.op('Range', [t.ints([0], []), total, t.ints([1], [])], '/model/Range_1');
  const causal = t.op('LessOrEqual', [kPos, qPos], '/model/LessOrEqual');
  const biasFor = (allowed: string, name: string) => t.op('Add', [padBias4, t.op('Where', [allowed, t.c([0]), t.c([-1e4])], `${name}/Where`)], `${name}/Add`);
  const globalBias = biasFor(causal, '/model/global_mask');
  const localBias = o.slidingWindow
    ? biasFor(
        t.op(
          'And',
          [causal, t.op('Greater', [kPos, t.op('Sub', [qPos, t.ints([o.slidingWindow], [])], '/model/local_mask/Sub')], '/model/local_mask/Greater')],
          '/model/local_mask/And',
        ),
        '/model/local_mask',
      )
    : globalBias;

  let residual = 'inputs_embeds';
  for (let l = 0; l < spec.layers; l++) {
    const p = `/model/layers.${l}`;
    const w = `model.layers.${l}`;
    const x = t.rmsNorm(residual, hidden, `${p}/input_layernorm`, `${w}.input_layernorm.weight`);
    let q: string;
    let k: string;
    let v: string;
    if (o.fusedQkv) {
      const qkv = t.proj(x, hidden, (heads + 2 * kvHeads) * hd, `${p}/self_attn/qkv_proj`, `${w}.self_attn.qkv_proj`, o.qkvBias);
      const slice = (from: number, to: number, name: string) =>
        t.op('Slice', [qkv, t.ints([from * hd]), t.ints([to * hd]), t.ints([-1])], `${p}/self_attn/${name}`);
      q = slice(0, heads, 'Slice');
      k = slice(heads, heads + kvHeads, 'Slice_1');
      v = slice(heads + kvHeads, heads + 2 * kvHeads, 'Slice_2');
    } else {
      q = t.proj(x, hidden, heads * hd, `${p}/self_attn/q_proj`, `${w}.self_attn.q_proj`, o.qkvBias);
      k = t.proj(x, hidden, kvHeads * hd, `${p}/self_attn/k_proj`, `${w}.self_attn.k_proj`, o.qkvBias);
      v = t.proj(x, hidden, kvHeads * hd, `${p}/self_attn/v_proj`, `${w}.self_attn.v_proj`, o.qkvBias);
    }
    const heads4 = (y: string, n: number, name: string, norm?: string) => {
      let r = t.op('Reshape', [y, t.ints([0, 0, n, hd])], `${p}/self_attn/${name}/Reshape`);
      if (norm) r = t.rmsNorm(r, hd, `${p}/self_attn/${norm}`, `${w}.self_attn.${norm}.weight`);
      return t.op('Transpose', [r], `${p}/self_attn/${name}/Transpose`, { perm: [0, 2, 1, 3] });
    };
    const q4 = heads4(q, heads, 'q', o.qkNorm ? 'q_norm' : undefined);
    const k4 = t.b.node('Concat', [`past_key_values.${l}.key`, heads4(k, kvHeads, 'k', o.qkNorm ? 'k_norm' : undefined)], `${p}/self_attn/Concat`, {
      attrs: { axis: 2 },
      outputs: [`present.${l}.key`],
    })[0];
    const v4 = t.b.node('Concat', [`past_key_values.${l}.value`, heads4(v, kvHeads, 'v')], `${p}/self_attn/Concat_1`, {
      attrs: { axis: 2 },
      outputs: [`present.${l}.value`],
    })[0];
    const repeat = (y: string, name: string) => {
      const u = t.op('Unsqueeze', [y, t.ints([2])], `${p}/self_attn/${name}/Unsqueeze`);
      const c = t.op('Concat', Array(heads / kvHeads).fill(u), `${p}/self_attn/${name}/Concat`, { axis: 2 });
      return t.op('Reshape', [c, t.ints([0, heads, -1, hd])], `${p}/self_attn/${name}/Reshape`);
    };
    const kT = t.op('Transpose', [repeat(k4, 'repeat_k')], `${p}/self_attn/Transpose_3`, { perm: [0, 1, 3, 2] });
    let scores = t.op('Mul', [t.op('MatMul', [q4, kT], `${p}/self_attn/MatMul`), t.c([1 / Math.sqrt(hd)])], `${p}/self_attn/Mul`);
    if (o.softcap) {
      const tanh = t.op('Tanh', [t.op('Div', [scores, t.c([o.softcap])], `${p}/self_attn/Div`)], `${p}/self_attn/Tanh`);
      scores = t.op('Mul', [tanh, t.c([o.softcap])], `${p}/self_attn/Mul_1`);
    }
    const masked = t.op('Add', [scores, t.isSliding(l) ? localBias : globalBias], `${p}/self_attn/Add`);
    // torch's eager attention takes the softmax in float32 and casts back.
    const half = t.act !== F;
    const sm = t.op('Softmax', [half ? t.op('Cast', [masked], `${p}/self_attn/Cast`, { to: F }) : masked], `${p}/self_attn/Softmax`, { axis: -1 });
    const probs = half ? t.op('Cast', [sm], `${p}/self_attn/Cast_1`, { to: t.act }) : sm;
    const ctx = t.op('Transpose', [t.op('MatMul', [probs, repeat(v4, 'repeat_v')], `${p}/self_attn/MatMul_1`)], `${p}/self_attn/Transpose_4`, {
      perm: [0, 2, 1, 3],
    });
    const merged = t.op('Reshape', [ctx, t.ints([0, 0, heads * hd])], `${p}/self_attn/Reshape_3`);
    let attnOut = t.proj(merged, heads * hd, hidden, `${p}/self_attn/o_proj`, `${w}.self_attn.o_proj`);
    if (o.sandwich) attnOut = t.rmsNorm(attnOut, hidden, `${p}/post_attention_layernorm`, `${w}.post_attention_layernorm.weight`);
    const r1 = t.op('Add', [residual, attnOut], `${p}/Add`);
    const preMlp = o.sandwich ? 'pre_feedforward_layernorm' : 'post_attention_layernorm';
    let mlpOut = t.mlp(t.rmsNorm(r1, hidden, `${p}/${preMlp}`, `${w}.${preMlp}.weight`), `${p}/mlp`, w);
    if (o.sandwich) mlpOut = t.rmsNorm(mlpOut, hidden, `${p}/post_feedforward_layernorm`, `${w}.post_feedforward_layernorm.weight`);
    residual = t.op('Add', [r1, mlpOut], `${p}/Add_1`);
  }
  t.lmHead(t.rmsNorm(residual, hidden, '/model/norm', 'model.norm.weight'));
  return t.b.model({ '': 17, ...(o.nbits ? { [MS]: 1 } : {}) });
}

function genai(spec: LayoutSpec, o: LayoutOptions): ModelProto {
  const t = new LayoutBuilder(spec, o);
  const { hidden, heads, kvHeads, headDim: hd } = spec;
  t.io(false);
  const m = '/model/attn_mask_reformat/attn_mask_subgraph';
  const sum = t.op('ReduceSum', ['attention_mask', t.ints([1])], `${m}/ReduceSum`, { keepdims: 0 });
  const seqlensK = t.op('Cast', [t.op('Sub', [sum, t.ints([1], [])], `${m}/Sub`)], `${m}/Sub/Cast`, { to: DataType.INT32 });
  const totalLen = t.op(
    'Cast',
    [t.op('Gather', [t.op('Shape', ['attention_mask'], `${m}/Shape`), t.ints([1], [])], `${m}/Gather`, { axis: 0 })],
    `${m}/Gather/Cast`,
    {
      to: DataType.INT32,
    },
  );

  let normed = t.simplifiedNorm('inputs_embeds', hidden, '/model/layers.0/input_layernorm', 'model.layers.0.input_layernorm.weight');
  let residual = 'inputs_embeds';
  for (let l = 0; l < spec.layers; l++) {
    const p = `/model/layers.${l}`;
    const w = `model.layers.${l}`;
    const headNorm = (y: string, n: number, norm: string) => {
      // genai's Gemma 3 q/k norms: a SimplifiedLayerNormalization over head_dim on a [b, s, n, hd] view.
      const r = t.op('Reshape', [y, t.ints([0, 0, n, hd])], `${p}/attn/${norm}/Reshape`);
      return t.op('Reshape', [t.simplifiedNorm(r, hd, `${p}/attn/${norm}`, `${w}.attn.${norm}.weight`), t.ints([0, 0, n * hd])], `${p}/attn/${norm}/Reshape_1`);
    };
    let qkv: string[];
    if (o.fusedQkv) {
      qkv = [t.proj(normed, hidden, (heads + 2 * kvHeads) * hd, `${p}/attn/qkv_proj`, `${w}.attn.qkv_proj`, o.qkvBias), '', ''];
    } else {
      const q = t.proj(normed, hidden, heads * hd, `${p}/attn/q_proj`, `${w}.attn.q_proj`, o.qkvBias);
      const k = t.proj(normed, hidden, kvHeads * hd, `${p}/attn/k_proj`, `${w}.attn.k_proj`, o.qkvBias);
      const v = t.proj(normed, hidden, kvHeads * hd, `${p}/attn/v_proj`, `${w}.attn.v_proj`, o.qkvBias);
      qkv = o.qkNorm ? [headNorm(q, heads, 'q_norm'), headNorm(k, kvHeads, 'k_norm'), v] : [q, k, v];
    }
    const attrs: Record<string, number | { float: number }> = { num_heads: heads, kv_num_heads: kvHeads, scale: { float: 1 / Math.sqrt(hd) } };
    if (t.isSliding(l)) attrs.local_window_size = o.slidingWindow!;
    if (o.softcap) attrs.softcap = { float: o.softcap };
    const [attn] = t.b.node(
      'GroupQueryAttention',
      [...qkv, `past_key_values.${l}.key`, `past_key_values.${l}.value`, seqlensK, totalLen],
      `${p}/attn/GroupQueryAttention`,
      {
        attrs,
        domain: MS,
        outputs: [`${p}/attn/GroupQueryAttention/output_0`, `present.${l}.key`, `present.${l}.value`],
      },
    );
    const oProj = t.proj(attn, heads * hd, hidden, `${p}/attn/o_proj`, `${w}.attn.o_proj`);
    const last = l === spec.layers - 1;
    const nextName = last ? `/model/layers.${spec.layers}/final_norm_layernorm` : `/model/layers.${l + 1}/input_layernorm`;
    const nextWeight = last ? 'model.norm.weight' : `model.layers.${l + 1}.input_layernorm.weight`;
    if (o.sandwich) {
      const post = t.simplifiedNorm(oProj, hidden, `${p}/post_attention_layernorm`, `${w}.post_attention_layernorm.weight`);
      let ff: { normed: string; sum: string };
      if (o.attentionAdd) {
        const sum = t.op('Add', [residual, post], `${p}/Add_1`);
        ff = { sum, normed: t.simplifiedNorm(sum, hidden, `${p}/pre_feedforward_layernorm`, `${w}.pre_feedforward_layernorm.weight`) };
      } else {
        ff = t.skipNorm(post, residual, `${p}/pre_feedforward_layernorm`, `${w}.pre_feedforward_layernorm.weight`, l % 2 === 0);
      }
      const down = t.simplifiedNorm(t.mlp(ff.normed, `${p}/mlp`, w), hidden, `${p}/post_feedforward_layernorm`, `${w}.post_feedforward_layernorm.weight`);
      const next = t.skipNorm(down, ff.sum, nextName, nextWeight, l % 2 === 1, !last);
      normed = next.normed;
      residual = next.sum;
    } else {
      const post = t.skipNorm(oProj, residual, `${p}/post_attention_layernorm`, `${w}.post_attention_layernorm.weight`, l % 2 === 0);
      const next = t.skipNorm(t.mlp(post.normed, `${p}/mlp`, w), post.sum, nextName, nextWeight, l % 2 === 1, !last);
      normed = next.normed;
      residual = next.sum;
    }
  }
  t.lmHead(normed);
  return t.b.model({ '': 17, [MS]: 1 });
}

export function buildLayoutDecoder(o: LayoutOptions, spec: LayoutSpec = LAYOUT_SPEC): ModelProto {
  return o.style === 'optimum' ? optimum(spec, o) : genai(spec, o);
}

export function layoutConfig(spec: LayoutSpec = LAYOUT_SPEC, o?: LayoutOptions): object {
  return {
    model_type: o?.sandwich ? 'gemma3' : 'idefics3',
    text_config: {
      model_type: o?.sandwich ? 'gemma3_text' : 'llama',
      num_hidden_layers: spec.layers,
      hidden_size: spec.hidden,
      num_attention_heads: spec.heads,
      num_key_value_heads: spec.kvHeads,
      head_dim: spec.headDim,
      vocab_size: spec.vocab,
      ...(o?.slidingWindow ? { sliding_window: o.slidingWindow } : {}),
    },
  };
}

/** The layouts every layout test runs: what people ship, in both export styles. */
export const LAYOUTS: LayoutOptions[] = [
  { style: 'optimum', sandwich: true, qkNorm: true, softcap: 50, slidingWindow: 2 }, // Gemma 2/3, torch.onnx
  { style: 'genai', sandwich: true, qkNorm: true, slidingWindow: 2 }, // Gemma 3, onnxruntime-genai
  { style: 'genai', sandwich: true, nbits: true }, // Gemma, genai int4
  { style: 'genai', sandwich: true, attentionAdd: true, slidingWindow: 2 }, // genai Gemma 3 whose attention merge is an Add
  { style: 'optimum', fusedQkv: true }, // Phi-3
  { style: 'genai', fusedQkv: true }, // Phi-3, packed QKV into GroupQueryAttention
  { style: 'optimum', qkvBias: true }, // Qwen2
  { style: 'genai', qkvBias: true },
  { style: 'optimum', nbits: true }, // onnx-community *_q4
  { style: 'genai', nbits: true, qkvBias: true },
  { style: 'optimum', sandwich: true, qkNorm: true, float16: true }, // fp16 with float32 up-casts around norms/softmax
  { style: 'genai', sandwich: true, float16: true },
  { style: 'genai', fusedQkv: true, nbits: true, float16: true },
];

export function configOf(o: LayoutOptions, spec: LayoutSpec = LAYOUT_SPEC): object {
  return (layoutConfig(spec, o) as { text_config: object }).text_config;
}
