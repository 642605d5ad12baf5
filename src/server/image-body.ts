import type { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Errors } from '../errors.js';

const OWN_CODES: ReadonlySet<string> = new Set(Object.keys(Errors));

/** The image bytes of a raw-body or multipart (`image` field) request. */
export async function readImage(request: FastifyRequest): Promise<Buffer> {
  if (request.isMultipart()) return readMultipartImage(request);
  const body = request.body;
  if (body === undefined || body === null) throw new Errors.EMPTY_BODY();
  if (!Buffer.isBuffer(body)) throw new Errors.UNSUPPORTED_MEDIA_TYPE(request.headers['content-type'] ?? '(none)');
  return body;
}

/**
 * The file field `image` of a multipart body. Fastify's body limit covers only
 * the bodies it reads itself, and busboy's limits are per part: here the
 * route's body limit covers the whole body as it arrives (every part, the
 * boundaries and text fields included), and any other file field is refused
 * when its header arrives, before its bytes are read. On a refusal the rest of
 * the body is discarded unread; the answer closes the connection (see the
 * error handler).
 */
async function readMultipartImage(request: FastifyRequest): Promise<Buffer> {
  const limit = request.routeOptions.bodyLimit;
  // A declared length over the limit is refused before a byte is read (and before 100 Continue).
  if (Number(request.headers['content-length']) > limit) throw new Errors.BODY_TOO_LARGE(limit);
  const raw = request.raw;
  let current: Readable | undefined;
  let received = 0;
  let overflow!: (err: Error) => void;
  const tooLarge = new Promise<never>((_resolve, reject) => (overflow = reject));
  const stop = (err?: Error) => {
    raw.off('data', count);
    if (!err) return;
    raw.unpipe();
    raw.resume();
    current?.destroy(err);
  };
  const count = (chunk: Buffer) => {
    received += chunk.length;
    if (received <= limit) return;
    const err = new Errors.BODY_TOO_LARGE(limit);
    stop(err);
    overflow(err);
  };
  const consume = async (): Promise<Buffer | undefined> => {
    let image: Buffer | undefined;
    for await (const part of request.parts()) {
      if (part.type !== 'file') continue; // text fields: busboy's field limits, and they count towards the total
      if (part.fieldname !== 'image') {
        throw new Errors.INVALID_REQUEST(
          `multipart file field ${JSON.stringify(part.fieldname.slice(0, 64))} is not taken: send the image as the one file field "image"`,
        );
      }
      // Two images would make the answer ambiguous: refuse rather than pick one.
      if (image) throw new Errors.INVALID_REQUEST('multipart body has more than one file field named "image"; send one');
      current = part.file;
      image = await part.toBuffer();
      current = undefined;
    }
    return image;
  };
  // consume() pipes the request into busboy synchronously; counting from the same tick sees every chunk.
  const reading = consume();
  raw.on('data', count);
  let image: Buffer | undefined;
  try {
    image = await Promise.race([reading, tooLarge]);
    stop();
  } catch (err) {
    stop(err as Error);
    reading.catch(() => undefined); // settles (or not) after the answer; nothing left to report
    // busboy's own errors (no boundary, a body cut before its closing boundary, a bad
    // part header) are plain Errors: the client's malformed body, not a server fault.
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && (OWN_CODES.has(code) || code.startsWith('FST_'))) throw err;
    throw new Errors.INVALID_REQUEST(`malformed multipart body: ${(err as Error).message}`);
  }
  if (!image) throw new Errors.EMPTY_BODY();
  return image;
}

/** Deepest nesting a JSON body may have: the routes that take JSON take flat objects. */
export const MAX_JSON_DEPTH = 32;

/** How deep `text` nests arrays and objects (strings skipped); stops counting past `limit`. */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max && (max = depth) > limit) return max;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/**
 * Replaces Fastify's default JSON and text parsers, which are active on every
 * route: a route without a body schema takes no JSON or text body (415
 * UNSUPPORTED_MEDIA_TYPE, as for any other content type it does not take;
 * an empty body passes), and a JSON body is refused past MAX_JSON_DEPTH
 * before JSON.parse and schema validation see it. Child contexts inherit
 * this; /v1/uploads replaces all parsers with its own.
 */
export function installBodyGuards(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser(['application/json', 'text/plain']);
  const refuseUnlessSchema = (request: FastifyRequest, body: string, type: string): Error | undefined => {
    if (request.routeOptions.schema?.body !== undefined || body.length === 0) return undefined;
    return new Errors.UNSUPPORTED_MEDIA_TYPE(`${type} (this route takes no ${type} body)`);
  };
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    const refused = refuseUnlessSchema(request, text, 'application/json');
    if (refused) return done(refused, undefined);
    if (text.length === 0) return done(null, undefined);
    if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH)
      return done(new Errors.INVALID_REQUEST(`JSON body nested deeper than ${MAX_JSON_DEPTH} levels`), undefined);
    parseJson(request, text, done);
  });
  app.addContentTypeParser('text/plain', { parseAs: 'string' }, (request, body, done) => {
    const refused = refuseUnlessSchema(request, body as string, 'text/plain');
    done(refused ?? null, refused || (body as string).length === 0 ? undefined : body);
  });
}
