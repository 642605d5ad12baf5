import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Errors } from '../errors.js';

const OWN_CODES: ReadonlySet<string> = new Set(Object.keys(Errors));

/** The image bytes of a raw-body or multipart (`image` field) request. */
export async function readImage(request: FastifyRequest): Promise<Buffer> {
  if (request.isMultipart()) {
    let image: Buffer | undefined;
    let images = 0;
    try {
      for await (const part of request.parts()) {
        if (part.type === 'file') {
          // Drain every file part so the request completes, keep the one named image.
          const bytes = await part.toBuffer();
          if (part.fieldname === 'image' && images++ === 0) image = bytes;
        }
      }
    } catch (err) {
      // busboy's own errors (no boundary, a body cut before its closing boundary, a bad
      // part header) are plain Errors: the client's malformed body, not a server fault.
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string' && (OWN_CODES.has(code) || code.startsWith('FST_'))) throw err;
      throw new Errors.INVALID_REQUEST(`malformed multipart body: ${(err as Error).message}`);
    }
    // Two images would make the answer ambiguous: refuse rather than pick one.
    if (images > 1) throw new Errors.INVALID_REQUEST(`multipart body has ${images} file fields named "image"; send one`);
    if (!image) throw new Errors.EMPTY_BODY();
    return image;
  }
  const body = request.body;
  if (body === undefined || body === null) throw new Errors.EMPTY_BODY();
  if (!Buffer.isBuffer(body)) throw new Errors.UNSUPPORTED_MEDIA_TYPE(request.headers['content-type'] ?? '(none)');
  return body;
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
      if (c === 0x5c) i++; // backslash: skip the escaped character
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
    if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) return done(new Errors.INVALID_REQUEST(`JSON body nested deeper than ${MAX_JSON_DEPTH} levels`), undefined);
    parseJson(request, text, done);
  });
  app.addContentTypeParser('text/plain', { parseAs: 'string' }, (request, body, done) => {
    const refused = refuseUnlessSchema(request, body as string, 'text/plain');
    done(refused ?? null, refused || (body as string).length === 0 ? undefined : body);
  });
}
