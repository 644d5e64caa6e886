import { Logger, type Provider } from '@nestjs/common';
import { resolveDetector, type LoadedDetector } from '@libs/revision';
import type { VlmEngine } from '@libs/vlm';
import { VLM_ENGINE } from '@libs/worker';
import { GENERATOR_CONFIG, type GeneratorConfig } from './config';

/** The hidden-state detector (or null: off), checked against the engine's decoder once, at start-up. */
export const DETECTOR = Symbol('DETECTOR');

export const detectorProvider: Provider = {
  provide: DETECTOR,
  inject: [VLM_ENGINE, GENERATOR_CONFIG],
  useFactory: (engine: VlmEngine, config: GeneratorConfig): LoadedDetector | null => {
    const { detector, reason } = resolveDetector(config.detectorFile, engine.info());
    new Logger('Detector').log(detector && config.detectorFlags ? `${reason}; flags jobs (ETA_DETECTOR_FLAGS)` : reason);
    return detector;
  },
};
