import type { FastifyRequest } from 'fastify';
import { ModerationError, type Limits } from '@libs/contracts';
import { intakeBodyLimits } from './body-limits';
import type { IntakeItem } from './intake.service';
import { jsonDepthExceeds, valueDepthExceeds } from './json-depth';
import { hasReplacementCharacter } from './text-checks';

/** Base64 or data: URL to bytes; the size is checked from the text length before anything is decoded or copied. */
export function decodeBase64Image(value: unknown, limits: Limits, index: number): Uint8Array | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new ModerationError('invalid_request', 'image must be a base64 string', { item: index });
  const tooLarge = () =>
    new ModerationError('image_too_large', `image is over the limit of ${limits.maxImageBytes} bytes`, { item: index, limit: limits.maxImageBytes });
  // Line breaks may add a few percent; a text much longer than the base64 of the limit is refused without the copy.
  if (value.length > Math.ceil(limits.maxImageBytes / 3) * 4 * 1.1 + 256) throw tooLarge();
  const body = value.startsWith('data:') ? value.slice(value.indexOf(',') + 1) : value;
  const compact = body.replace(/\s+/g, '');
  if (Math.floor((compact.length * 3) / 4) - 2 > limits.maxImageBytes) throw tooLarge();
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(compact)) throw new ModerationError('invalid_request', 'image is not valid base64', { item: index });
  const bytes = Buffer.from(compact, 'base64');
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function tooDeep(limits: Limits, what: string): ModerationError {
  return new ModerationError('json_too_deep', `${what} is nested deeper than ${limits.maxJsonDepth} levels`, { limit: limits.maxJsonDepth });
}

/** Depth is checked on the text, without recursion, before JSON.parse builds anything. */
function parseJsonField(name: string, raw: string | undefined, limits: Limits): unknown {
  if (raw === undefined) return undefined;
  if (jsonDepthExceeds(raw, limits.maxJsonDepth)) throw tooDeep(limits, `field ${name}`);
  try {
    return JSON.parse(raw);
  } catch {
    throw new ModerationError('invalid_request', `field ${name} must be JSON`);
  }
}

interface MultipartForm {
  fields: Map<string, string>;
  files: { field: string; bytes: Uint8Array }[];
}

interface MultipartBounds {
  maxFiles: number;
  /** The whole body. */
  maxBytes: number;
  /** One text field. */
  maxFieldBytes: number;
  tooManyFiles: () => ModerationError;
}

/** A text field cut short by the field-size limit: name the limit the client hit. */
function fieldTooLong(name: string, bounds: MultipartBounds, limits: Limits): ModerationError {
  if (name === 'prompt')
    return new ModerationError('prompt_too_long', `prompt is limited to ${limits.maxPromptChars} characters`, { limit: limits.maxPromptChars });
  if (name === 'answer')
    return new ModerationError('answer_too_long', `answer is limited to ${limits.maxAnswerChars} characters`, { limit: limits.maxAnswerChars });
  if (name === 'metadata')
    return new ModerationError('metadata_too_large', `metadata is limited to ${limits.maxMetadataBytes} bytes of JSON`, { limit: limits.maxMetadataBytes });
  return new ModerationError('request_too_large', `field ${name} is over the limit of ${bounds.maxFieldBytes} bytes`, { limit: bounds.maxFieldBytes });
}

/** Errors of @fastify/multipart and busboy: limits keep their fastify code (the error filter maps it), the rest is bad input. */
function multipartError(err: unknown, bounds: MultipartBounds): unknown {
  if (err instanceof ModerationError) return err;
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown };
  if (e?.code === 'FST_FILES_LIMIT') return bounds.tooManyFiles();
  if (typeof e?.code === 'string' && e.code.startsWith('FST_')) return err;
  // busboy: "Multipart: Boundary not found", "Malformed part header", "Unexpected end of form", ...
  return new ModerationError('invalid_request', `malformed multipart/form-data body: ${String(e?.message ?? err).slice(0, 200)}`);
}

/** Reads every part, holding the whole request, each text field and each file to their limits. */
async function readMultipart(req: FastifyRequest, limits: Limits, bounds: MultipartBounds): Promise<MultipartForm> {
  const fields = new Map<string, string>();
  const files: MultipartForm['files'] = [];
  let total = 0;
  try {
    const parts = req.parts({
      limits: { fileSize: limits.maxImageBytes, files: bounds.maxFiles, fieldSize: bounds.maxFieldBytes, parts: bounds.maxFiles * 8 + 16 },
    });
    for await (const part of parts) {
      if (part.type === 'file') {
        const bytes = await part.toBuffer();
        total += bytes.byteLength;
        files.push({ field: part.fieldname, bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) });
      } else {
        if (part.valueTruncated) {
          // What arrived of a JSON field may already show it is too deep: that is the limit to name.
          if (typeof part.value === 'string' && jsonDepthExceeds(part.value, limits.maxJsonDepth)) throw tooDeep(limits, `field ${part.fieldname}`);
          throw fieldTooLong(part.fieldname, bounds, limits);
        }
        let value: string;
        if (typeof part.value === 'string') value = part.value;
        else {
          // A part sent as application/json arrives parsed: check its depth before serialising it back.
          if (valueDepthExceeds(part.value, limits.maxJsonDepth)) throw tooDeep(limits, `field ${part.fieldname}`);
          value = JSON.stringify(part.value ?? null);
        }
        if (hasReplacementCharacter(value)) {
          throw new ModerationError('text_invalid_unicode', `field ${part.fieldname} is not valid UTF-8 (or holds U+FFFD, which marks bytes that were not)`, {
            field: part.fieldname,
          });
        }
        total += Buffer.byteLength(value);
        fields.set(part.fieldname, value);
      }
      if (total > bounds.maxBytes) {
        throw new ModerationError('request_too_large', `request is over the limit of ${bounds.maxBytes} bytes`, { limit: bounds.maxBytes });
      }
    }
  } catch (err) {
    throw multipartError(err, bounds);
  }
  return { fields, files };
}

/** Submissions are JSON or multipart; anything else (fastify also parses text/plain) is refused. */
function requireJson(req: FastifyRequest): void {
  const type = String(req.headers['content-type'] ?? '')
    .split(';')[0]
    .trim()
    .toLowerCase();
  if (type !== 'application/json' && !type.endsWith('+json')) {
    throw new ModerationError('unsupported_media_type', `send application/json or multipart/form-data, not "${type || 'nothing'}"`);
  }
}

function objectBody(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ModerationError('invalid_request', 'request body must be a JSON object');
  return body as Record<string, unknown>;
}

/** The fields each body takes (the OpenAPI document declares them with additionalProperties: false). */
const JSON_JOB_FIELDS = ['prompt', 'answer', 'profile', 'metadata', 'image', 'callback_url'] as const;
// A batch's items take a job's fields but callback_url, which the batch has once for all of them.
const JSON_ITEM_FIELDS = ['prompt', 'answer', 'profile', 'metadata', 'image'] as const;
const JSON_BATCH_FIELDS = ['items', 'metadata', 'callback_url'] as const;
const FORM_JOB_FIELDS = ['prompt', 'answer', 'profile', 'metadata', 'callback_url'] as const;
const FORM_BATCH_FIELDS = ['items', 'metadata', 'callback_url'] as const;
const FORM_ITEM_FIELDS = ['prompt', 'answer', 'profile', 'metadata', 'file'] as const;

/** Bodies are strict: a field the API does not define is refused, so a misspelt `propmt` is not silently dropped. */
function refuseUnknown(names: Iterable<string>, allowed: readonly string[], where: string, item?: number): void {
  for (const name of names) {
    if (!allowed.includes(name)) {
      throw new ModerationError('unknown_field', `${where} has no field "${name.slice(0, 100)}"; it takes ${allowed.join(', ')}`, {
        field: name.slice(0, 100),
        ...(item === undefined ? {} : { item }),
      });
    }
  }
}

/** A JSON object of the named fields only. */
function strictObject(raw: unknown, allowed: readonly string[], where: string, item?: number): Record<string, unknown> {
  const body = objectBody(raw);
  refuseUnknown(Object.keys(body), allowed, where, item);
  return body;
}

/** One job from JSON (`image` as base64) or multipart (fields prompt, answer, profile, metadata; file `image`). */
export async function readJob(req: FastifyRequest, limits: Limits): Promise<IntakeItem> {
  if (req.isMultipart()) {
    const body = intakeBodyLimits(limits);
    const form = await readMultipart(req, limits, {
      maxFiles: 1,
      maxBytes: body.job,
      maxFieldBytes: body.jobField,
      tooManyFiles: () => new ModerationError('too_many_files', 'a job takes one image; use /v1/batches for several', { limit: 1 }),
    });
    refuseUnknown(form.fields.keys(), FORM_JOB_FIELDS, 'a multipart job');
    for (const file of form.files) {
      if (file.field !== 'image') {
        throw new ModerationError('unknown_field', `a multipart job takes its file in the field "image", not "${file.field.slice(0, 100)}"`, {
          field: file.field.slice(0, 100),
        });
      }
    }
    return {
      prompt: form.fields.get('prompt'),
      answer: form.fields.get('answer'),
      profile: form.fields.get('profile'),
      metadata: parseJsonField('metadata', form.fields.get('metadata'), limits),
      image: form.files[0]?.bytes,
      callbackUrl: form.fields.get('callback_url'),
    };
  }
  requireJson(req);
  const body = strictObject(req.body, JSON_JOB_FIELDS, 'a job');
  return {
    prompt: body.prompt,
    answer: body.answer,
    profile: body.profile,
    metadata: body.metadata,
    image: decodeBase64Image(body.image, limits, 0),
    callbackUrl: body.callback_url,
  };
}

/**
 * Many jobs. JSON: `{ items: [...], metadata? }` or a bare array. Multipart: a field `items` (JSON array) and
 * one file per item; an item names its file's field in `file`, or files pair with items in order.
 */
export async function readBatch(req: FastifyRequest, limits: Limits): Promise<{ items: IntakeItem[]; metadata: unknown; callbackUrl?: unknown }> {
  if (req.isMultipart()) {
    const body = intakeBodyLimits(limits);
    const form = await readMultipart(req, limits, {
      maxFiles: limits.maxBatchItems,
      maxBytes: body.batch,
      maxFieldBytes: body.batchField,
      tooManyFiles: () =>
        new ModerationError('too_many_files', `a batch takes at most ${limits.maxBatchItems} files, one per item`, { limit: limits.maxBatchItems }),
    });
    refuseUnknown(form.fields.keys(), FORM_BATCH_FIELDS, 'a multipart batch (files aside)');
    const rawItems = parseJsonField('items', form.fields.get('items'), limits);
    if (!Array.isArray(rawItems)) throw new ModerationError('invalid_request', 'multipart batches need a field "items" holding a JSON array');
    if (rawItems.length > limits.maxBatchItems) {
      throw new ModerationError('batch_too_large', `a batch holds at most ${limits.maxBatchItems} items; got ${rawItems.length}`, {
        limit: limits.maxBatchItems,
      });
    }
    const byField = new Map(form.files.map((f) => [f.field, f.bytes]));
    const named = rawItems.some((item) => item && typeof item === 'object' && 'file' in item);
    if (!named && form.files.length > 0 && form.files.length !== rawItems.length) {
      throw new ModerationError('invalid_request', `got ${form.files.length} files for ${rawItems.length} items; name each item's file in "file"`);
    }
    const items = rawItems.map((raw, i): IntakeItem => {
      const item = strictObject(raw, FORM_ITEM_FIELDS, `item ${i} of a multipart batch`, i);
      let image: Uint8Array | undefined;
      if (named && item.file !== undefined) {
        image = byField.get(String(item.file));
        if (!image) throw new ModerationError('image_missing', `item ${i} names file field "${String(item.file)}", which was not sent`, { item: i });
      } else if (!named) {
        image = form.files[i]?.bytes;
      }
      return { prompt: item.prompt, answer: item.answer, profile: item.profile, metadata: item.metadata, image };
    });
    return { items, metadata: parseJsonField('metadata', form.fields.get('metadata'), limits), callbackUrl: form.fields.get('callback_url') };
  }
  requireJson(req);
  const body = req.body;
  const rawItems = Array.isArray(body) ? body : strictObject(body, JSON_BATCH_FIELDS, 'a batch').items;
  if (!Array.isArray(rawItems)) throw new ModerationError('invalid_request', 'a batch is { items: [...] } or a JSON array');
  if (rawItems.length > limits.maxBatchItems) {
    throw new ModerationError('batch_too_large', `a batch holds at most ${limits.maxBatchItems} items; got ${rawItems.length}`, {
      limit: limits.maxBatchItems,
    });
  }
  const items = rawItems.map((raw, i): IntakeItem => {
    const item = strictObject(raw, JSON_ITEM_FIELDS, `item ${i} of a batch`, i);
    return { prompt: item.prompt, answer: item.answer, profile: item.profile, metadata: item.metadata, image: decodeBase64Image(item.image, limits, i) };
  });
  const wrapper = Array.isArray(body) ? undefined : (body as Record<string, unknown>);
  return { items, metadata: wrapper?.metadata, callbackUrl: wrapper?.callback_url };
}
