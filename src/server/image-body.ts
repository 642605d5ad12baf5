import type { FastifyRequest } from 'fastify';
import { Errors } from '../errors.js';

/** The image bytes of a raw-body or multipart (`image` field) request. */
export async function readImage(request: FastifyRequest): Promise<Buffer> {
  if (request.isMultipart()) {
    let image: Buffer | undefined;
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        // Drain every file part so the request completes, keep the one named image.
        const bytes = await part.toBuffer();
        if (part.fieldname === 'image' && !image) image = bytes;
      }
    }
    if (!image) throw new Errors.EMPTY_BODY();
    return image;
  }
  const body = request.body;
  if (body === undefined || body === null) throw new Errors.EMPTY_BODY();
  if (!Buffer.isBuffer(body)) throw new Errors.UNSUPPORTED_MEDIA_TYPE(request.headers['content-type'] ?? '(none)');
  return body;
}

