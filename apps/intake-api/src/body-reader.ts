import type { FastifyRequest } from 'fastify';
import { ModerationError, type Limits } from '@libs/contracts';
import type { IntakeItem } from './intake.service';

/** Base64 or data: URL to bytes; the size is checked from the text length before anything is decoded. */
export function decodeBase64Image(value: unknown, limits: Limits, index: number): Uint8Array | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new ModerationError('invalid_request', 'image must be a base64 string', { item: index });
  const body = value.startsWith('data:') ? value.slice(value.indexOf(',') + 1) : value;
  const compact = body.replace(/\s+/g, '');
  if (Math.floor((compact.length * 3) / 4) - 2 > limits.maxImageBytes) {
    throw new ModerationError('image_too_large', `image is over the limit of ${limits.maxImageBytes} bytes`, { item: index, limit: limits.maxImageBytes });
  }
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(compact)) throw new ModerationError('invalid_request', 'image is not valid base64', { item: index });
  const bytes = Buffer.from(compact, 'base64');
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function parseJsonField(name: string, raw: string | undefined): unknown {
  if (raw === undefined) return undefined;
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

/** Reads every part, holding the whole request to the request-size limit and each file to the image-size limit. */
async function readMultipart(req: FastifyRequest, limits: Limits, maxFiles: number): Promise<MultipartForm> {
  const fields = new Map<string, string>();
  const files: MultipartForm['files'] = [];
  let total = 0;
  const parts = req.parts({
    limits: { fileSize: limits.maxImageBytes, files: maxFiles, fieldSize: limits.maxRequestBytes, parts: maxFiles * 8 + 16 },
  });
  for await (const part of parts) {
    if (part.type === 'file') {
      const bytes = await part.toBuffer();
      total += bytes.byteLength;
      files.push({ field: part.fieldname, bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) });
    } else {
      const value = String(part.value ?? '');
      total += Buffer.byteLength(value);
      fields.set(part.fieldname, value);
    }
    if (total > limits.maxRequestBytes) {
      throw new ModerationError('request_too_large', `request is over the limit of ${limits.maxRequestBytes} bytes`, { limit: limits.maxRequestBytes });
    }
  }
  return { fields, files };
}

/** Submissions are JSON or multipart; anything else (fastify also parses text/plain) is refused. */
function requireJson(req: FastifyRequest): void {
  const type = String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json' && !type.endsWith('+json')) {
    throw new ModerationError('unsupported_media_type', `send application/json or multipart/form-data, not "${type || 'nothing'}"`);
  }
}

function objectBody(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ModerationError('invalid_request', 'request body must be a JSON object');
  return body as Record<string, unknown>;
}

/** One job from JSON (`image` as base64) or multipart (fields prompt, answer, profile, metadata; file `image`). */
export async function readJob(req: FastifyRequest, limits: Limits): Promise<IntakeItem> {
  if (req.isMultipart()) {
    const form = await readMultipart(req, limits, 2);
    if (form.files.length > 1) throw new ModerationError('invalid_request', 'a job takes one image; use /v1/batches for several');
    return {
      prompt: form.fields.get('prompt'),
      answer: form.fields.get('answer'),
      profile: form.fields.get('profile'),
      metadata: parseJsonField('metadata', form.fields.get('metadata')),
      image: form.files[0]?.bytes,
    };
  }
  requireJson(req);
  const body = objectBody(req.body);
  return { prompt: body.prompt, answer: body.answer, profile: body.profile, metadata: body.metadata, image: decodeBase64Image(body.image, limits, 0) };
}

/**
 * Many jobs. JSON: `{ items: [...], metadata? }` or a bare array. Multipart: a field `items` (JSON array) and
 * one file per item; an item names its file's field in `file`, or files pair with items in order.
 */
export async function readBatch(req: FastifyRequest, limits: Limits): Promise<{ items: IntakeItem[]; metadata: unknown }> {
  if (req.isMultipart()) {
    const form = await readMultipart(req, limits, limits.maxBatchItems + 1);
    const rawItems = parseJsonField('items', form.fields.get('items'));
    if (!Array.isArray(rawItems)) throw new ModerationError('invalid_request', 'multipart batches need a field "items" holding a JSON array');
    if (rawItems.length > limits.maxBatchItems) {
      throw new ModerationError('batch_too_large', `a batch holds at most ${limits.maxBatchItems} items; got ${rawItems.length}`, { limit: limits.maxBatchItems });
    }
    const byField = new Map(form.files.map((f) => [f.field, f.bytes]));
    const named = rawItems.some((item) => item && typeof item === 'object' && 'file' in item);
    if (!named && form.files.length > 0 && form.files.length !== rawItems.length) {
      throw new ModerationError('invalid_request', `got ${form.files.length} files for ${rawItems.length} items; name each item's file in "file"`);
    }
    const items = rawItems.map((raw, i): IntakeItem => {
      const item = objectBody(raw);
      let image: Uint8Array | undefined;
      if (named && item.file !== undefined) {
        image = byField.get(String(item.file));
        if (!image) throw new ModerationError('image_missing', `item ${i} names file field "${String(item.file)}", which was not sent`, { item: i });
      } else if (!named) {
        image = form.files[i]?.bytes;
      }
      return { prompt: item.prompt, answer: item.answer, profile: item.profile, metadata: item.metadata, image };
    });
    return { items, metadata: parseJsonField('metadata', form.fields.get('metadata')) };
  }
  requireJson(req);
  const body = req.body;
  const rawItems = Array.isArray(body) ? body : objectBody(body).items;
  if (!Array.isArray(rawItems)) throw new ModerationError('invalid_request', 'a batch is { items: [...] } or a JSON array');
  if (rawItems.length > limits.maxBatchItems) {
    throw new ModerationError('batch_too_large', `a batch holds at most ${limits.maxBatchItems} items; got ${rawItems.length}`, { limit: limits.maxBatchItems });
  }
  const items = rawItems.map((raw, i): IntakeItem => {
    const item = objectBody(raw);
    return { prompt: item.prompt, answer: item.answer, profile: item.profile, metadata: item.metadata, image: decodeBase64Image(item.image, limits, i) };
  });
  return { items, metadata: Array.isArray(body) ? undefined : (body as Record<string, unknown>).metadata };
}
