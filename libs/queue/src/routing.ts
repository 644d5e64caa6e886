import type { Stage } from '@libs/contracts';

/** Where a job enters the pipeline: with a supplied answer generation is skipped. */
export function entryStage(job: { answer?: string }): Stage {
  return job.answer !== undefined ? 'evaluate' : 'generate';
}

/** Where a job goes after a stage; `finish` means the verdict is written and nothing is enqueued. */
export function nextStage(stage: Stage, outcome: { flagged?: boolean } = {}): Stage | 'finish' {
  switch (stage) {
    case 'generate':
      return 'evaluate';
    case 'evaluate':
      return outcome.flagged ? 'align' : 'finish';
    case 'align':
      return 'finish';
  }
}
