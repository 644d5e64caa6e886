/**
 * @libs/onnx-graph: ONNX protobuf surgery for the moderation runtime: revisable decoders (revision inputs and
 * activation taps, DESIGN.md section 4) and decoder weight merging (section 6).
 */
export {
  DataType,
  decodeModel,
  encodeModel,
  readModel,
  writeModel,
  sha256File,
  type ModelProto,
  type GraphProto,
  type NodeProto,
  type TensorProto,
  type ValueInfo,
} from './onnx-proto';
export { GraphIndex } from './graph-index';
export {
  DecoderStructureError,
  findDecoderStructure,
  readTextConfig,
  type DecoderStructure,
  type LayerPoints,
  type ResidualMerge,
  type TextConfig,
} from './decoder-structure';
export { type DecoderLayout, describeLayout } from './decoder-layout';
export { attentionFlopsPerToken, decoderCost, kvCacheBytes, type DecoderCost } from './decoder-cost';
export { ElementTypes } from './element-types';
export { type NormStep, isStatisticOf, normStep } from './post-norm';
export { AlreadyRevisableError, REVISION_INPUTS, TAP_OUTPUTS, addRevisionPoints, isRevisable, type LayerPointReport } from './revision-surgery';
export {
  DECODER_FILE,
  REVISABLE_FILE,
  REVISABLE_MANIFEST,
  REVISABLE_FORMAT,
  prepareRevisableDecoder,
  readRevisableDecoderInfo,
  verifyRevisableDecoder,
  type PrepareOptions,
  type PrepareReport,
  type RevisableDecoderCheck,
  type RevisableDecoderInfo,
} from './revisable-decoder';
export { MergeMismatchError, mergeDecoderModels, mergeDecoders, type MergeOptions, type MergeReport, type MergeStats } from './weight-merge';
export { floatToHalf, halfToFloat, readFloatValues, withFloatValues } from './tensor-data';
export * from './model-builder';
