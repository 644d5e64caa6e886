export { VLM_ENGINE, VlmEngineCloser, vlmEngineProvider, type VlmEngineSettings } from '@libs/worker';
