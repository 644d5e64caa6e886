import { ModerationError } from '@libs/contracts';

/**
 * The forms of the ids intake hands out (see newId / idFromKey in intake.service.ts): 24 hex digits after `mod_` or
 * `bat_`; a batch's jobs add `_<index>`. Path ids are checked against them before any Redis call: an id is part of
 * a Redis key, and `bat_<hex>:items` would name the batch's sorted set.
 */
const JOB_ID = /^mod_[0-9a-f]{24}(?:_\d{1,9})?$/;
const BATCH_ID = /^bat_[0-9a-f]{24}$/;

export function checkId(kind: 'job' | 'batch', id: string): string {
  if (!(kind === 'job' ? JOB_ID : BATCH_ID).test(id)) {
    const form = kind === 'job' ? 'mod_<24 hex digits>' : 'bat_<24 hex digits>';
    throw new ModerationError('invalid_id', `not a ${kind} id: ${kind} ids look like ${form}`, { expected: form });
  }
  return id;
}
