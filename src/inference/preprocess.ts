import sharp, { type Metadata, type OutputInfo, type Sharp } from 'sharp';
import pLimit from 'p-limit';
import { Errors } from '../errors.js';
import { letterboxGeometry, LETTERBOX_PAD_VALUE, type Letterbox } from './letterbox.js';
import { layoutCores } from './thread-layout.js';
import { nativeJpegDecoder, nativeJpegScale } from './jpeg-native.js';

// Every image is new: libvips' operation cache would only hold memory.
sharp.cache(false);

/**
 * Decodes in flight at once, process-wide (decode_concurrency). More than the cores
 * add no throughput, only memory: every decode in flight holds libvips buffers and
 * its output, and freed native memory stays in the allocator's arenas, so 64 queued
 * decodes raised resident memory by 100 MiB and more for good (bench/results/
 * 2026-12-03-inference-speed.md). Headers (openImage) are read outside it.
 */
const decodeSlots = pLimit(layoutCores());

/** Sets how many decodes run at once (0: one per core). */
export function setDecodeConcurrency(n: number): void {
  decodeSlots.concurrency = n > 0 ? n : layoutCores();
}

export const SUPPORTED_IMAGE_FORMATS = new Set(['jpeg', 'png', 'webp']);

export interface PreparedImage {
  /** Letterboxed RGB pixels, uint8, HWC, inputHeight × inputWidth × 3. */
  pixels: Uint8Array;
  letterbox: Letterbox;
  format: string;
}

export interface PrepareOptions {
  inputWidth: number;
  inputHeight: number;
  maxPixels: number;
}

export interface ImageHeader {
  format: string;
  /** Upright size, after EXIF orientation. */
  width: number;
  height: number;
}

/** Signatures of formats that are recognised only to be refused (415) before any decoder sees them. */
const OTHER_SIGNATURES: { name: string; test: (b: Buffer) => boolean }[] = [
  { name: 'gif', test: (b) => b.toString('latin1', 0, 4) === 'GIF8' },
  { name: 'bmp', test: (b) => b.toString('latin1', 0, 2) === 'BM' },
  { name: 'tiff', test: (b) => ['II*\0', 'MM\0*'].includes(b.toString('latin1', 0, 4)) },
  { name: 'zip', test: (b) => b.toString('latin1', 0, 2) === 'PK' && [0x0403, 0x0605, 0x0807].includes(b.readUInt16LE(2)) },
  { name: 'pdf', test: (b) => b.toString('latin1', 0, 5) === '%PDF-' },
  { name: 'gzip', test: (b) => b[0] === 0x1f && b[1] === 0x8b },
  { name: 'heif/avif/mp4', test: (b) => b.toString('latin1', 4, 8) === 'ftyp' },
  { name: 'jpeg 2000', test: (b) => b.readUInt32BE(0) === 0x0000000c && b.toString('latin1', 4, 8) === 'jP  ' },
  { name: 'jpeg xl', test: (b) => (b[0] === 0xff && b[1] === 0x0a) || (b.readUInt32BE(0) === 0x0000000c && b.toString('latin1', 4, 8) === 'JXL ') },
  { name: 'psd', test: (b) => b.toString('latin1', 0, 4) === '8BPS' },
  { name: 'ico', test: (b) => b.readUInt32BE(0) === 0x00000100 },
  // SVG, HTML, XML: markup, possibly after a UTF-8 BOM and white space.
  { name: 'svg/html/xml', test: (b) => /^(\ufeff)?\s*</.test(b.toString('utf8', 0, 256)) },
];

/**
 * The format from the magic bytes, never from the declared content type (which
 * is only a hint): JPEG FF D8 FF, PNG 89 50 4E 47 0D 0A 1A 0A, WebP RIFF….WEBP.
 * A known other format (GIF, BMP, TIFF, SVG/HTML, ZIP, PDF, …) is 415; bytes
 * that are no known format are 400 INVALID_IMAGE. Only JPEG, PNG and WebP
 * bytes ever reach libvips, whose loaders would otherwise parse TIFF, GIF,
 * SVG (librsvg) or HEIF on their own sniffing.
 */
export function sniffImageFormat(bytes: Buffer): 'jpeg' | 'png' | 'webp' {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes.length >= 8 && bytes.readUInt32BE(0) === 0x89504e47 && bytes.readUInt32BE(4) === 0x0d0a1a0a) return 'png';
  if (bytes.length >= 12 && bytes.toString('latin1', 0, 4) === 'RIFF' && bytes.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  const padded = bytes.length >= 16 ? bytes : Buffer.concat([bytes, Buffer.alloc(16 - bytes.length)]);
  const other = OTHER_SIGNATURES.find((s) => s.test(padded));
  if (other) throw new Errors.UNSUPPORTED_MEDIA_TYPE(`(content is ${other.name})`);
  throw new Errors.INVALID_IMAGE('the content is not a JPEG, PNG or WebP image (no known magic bytes)');
}

/**
 * Chunks other than IDAT a PNG may have. Real files have a handful; libspng
 * spends seconds on a body of millions of tiny text chunks (CPU amplification).
 */
export const MAX_PNG_ANCILLARY_CHUNKS = 1000;

/**
 * Where the image's own structure says it ends (PNG: after IEND; JPEG: after
 * EOI, following embedded MPF images; WebP: the RIFF size), or undefined when
 * the structure is broken or cut short: the decoder then says what is wrong.
 * Throws INVALID_IMAGE for a PNG over MAX_PNG_ANCILLARY_CHUNKS.
 */
export function imageEnd(bytes: Buffer, format: 'jpeg' | 'png' | 'webp'): number | undefined {
  switch (format) {
    case 'png': {
      let ancillary = 0;
      for (let p = 8; p + 12 <= bytes.length; ) {
        const next = p + 12 + bytes.readUInt32BE(p);
        const type = bytes.readUInt32BE(p + 4);
        if (type === 0x49454e44) return next <= bytes.length ? next : undefined; // IEND
        if (type !== 0x49444154 && ++ancillary > MAX_PNG_ANCILLARY_CHUNKS) {
          throw new Errors.INVALID_IMAGE(`the PNG has more than ${MAX_PNG_ANCILLARY_CHUNKS} chunks besides its image data`);
        }
        p = next;
      }
      return undefined;
    }
    case 'webp': {
      const end = 8 + bytes.readUInt32LE(4);
      return end <= bytes.length ? end : undefined;
    }
    case 'jpeg':
      return jpegEnd(bytes, 0);
  }
}

/** Walks the JPEG markers from SOI at `start` (entropy-coded data by FF search) to EOI. */
function jpegEnd(b: Buffer, start: number): number | undefined {
  let p = start + 2;
  while (p < b.length) {
    if (b[p] !== 0xff) return undefined;
    while (p < b.length && b[p] === 0xff) p++; // fill bytes
    if (p >= b.length) return undefined;
    const marker = b[p++]!;
    if (marker === 0xd9) return p; // EOI
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue; // standalone markers
    if (marker === 0x00 || marker === 0xd8 || p + 2 > b.length) return undefined;
    const length = b.readUInt16BE(p);
    if (length < 2) return undefined;
    p += length;
    if (marker !== 0xda) continue;
    // SOS: scan data runs to the next marker other than stuffing (FF 00) and restarts (FF D0–D7).
    for (;;) {
      const ff = b.indexOf(0xff, p);
      if (ff < 0 || ff + 1 >= b.length) return undefined;
      const next = b[ff + 1]!;
      if (next === 0x00 || (next >= 0xd0 && next <= 0xd7)) p = ff + 2;
      else if (next === 0xff) p = ff + 1;
      else {
        p = ff;
        break;
      }
    }
  }
  return undefined;
}

/**
 * Refuses bytes after the end of the image (a JPEG followed by a ZIP, a PNG
 * followed by HTML: polyglot files), which every decoder would silently
 * ignore. Allowed after a JPEG: further JPEGs (MPF multi-picture files from
 * cameras append previews that way); after any format: zero padding.
 */
function checkNothingAfterEnd(bytes: Buffer, format: 'jpeg' | 'png' | 'webp'): void {
  let end = imageEnd(bytes, format);
  if (end === undefined) return;
  while (format === 'jpeg' && end + 3 <= bytes.length && bytes[end] === 0xff && bytes[end + 1] === 0xd8 && bytes[end + 2] === 0xff) {
    const next = jpegEnd(bytes, end);
    if (next === undefined) return;
    end = next;
  }
  for (let i = end; i < bytes.length; i++) {
    if (bytes[i] !== 0) throw new Errors.INVALID_IMAGE(`${bytes.length - end} bytes of other data follow the end of the ${format.toUpperCase()} image`);
  }
}

/**
 * Reads only the header: the format must be JPEG, PNG or WebP by its magic
 * bytes, nothing may follow the image's end, and width × height must be within
 * the pixel limit, so a decompression bomb costs a few bytes of parsing.
 */
export async function inspectImage(bytes: Buffer, maxPixels: number): Promise<ImageHeader> {
  return (await openWithMetadata(bytes, maxPixels, checkedFormat(bytes))).header;
}

/** The format by magic bytes, once the bytes are known not to be empty and to end where the image ends. */
function checkedFormat(bytes: Buffer): 'jpeg' | 'png' | 'webp' {
  if (bytes.length === 0) throw new Errors.EMPTY_BODY();
  const sniffed = sniffImageFormat(bytes);
  checkNothingAfterEnd(bytes, sniffed);
  return sniffed;
}

/** An image whose header passed inspectImage's checks, ready to decode once. */
export interface OpenedImage {
  header: ImageHeader;
  image: Sharp;
  /** The bytes of a plain JPEG (no EXIF, no ICC profile), which the native decoder may take. */
  plainJpeg?: Buffer;
}

/** Images decoded for model input since the process started, by decoder (sightline_image_decodes_total). */
const decodeCounts = { 'libjpeg-turbo': 0, sharp: 0 };

/** Decodes by decoder so far: the native path's share shows whether it is in use. */
export function imageDecodeCounts(): Readonly<typeof decodeCounts> {
  return decodeCounts;
}

/**
 * inspectImage's checks on one sharp instance that prepareImage then decodes from:
 * the header is read once, and no second instance (input buffer wrapping, option
 * parsing) is built per image. A plain JPEG (no EXIF, so upright as stored) has its
 * size read from its frame header here, and sharp is called once, for the decode:
 * sharp's metadata() cost 0.2–0.25 ms of the event loop per image (option parsing,
 * the result object) and a libuv round trip; without it a 320×180 JPEG is ready in
 * 1.4 instead of 1.9 ms (bench/results/2026-12-03-inference-speed.md).
 */
export async function openImage(bytes: Buffer, maxPixels: number): Promise<OpenedImage> {
  const sniffed = checkedFormat(bytes);
  const frame = sniffed === 'jpeg' ? plainJpegSize(bytes) : undefined;
  if (!frame) return openWithMetadata(bytes, maxPixels, sniffed);
  checkPixelCount(frame.width * frame.height, maxPixels);
  // libvips checks the limit again against the size libjpeg reads, so a frame header
  // read differently here cannot let a larger image through to the decoder (the native
  // decoder likewise refuses any size but the one expected from this header). The sharp
  // instance is built only when it is used: the native decoder needs none.
  let image: Sharp | undefined;
  return {
    header: { format: 'jpeg', ...frame },
    get image() {
      image ??= sharp(bytes, { pages: 1, limitInputPixels: maxPixels });
      return image;
    },
    plainJpeg: bytes,
  };
}

/** inspectImage's path for every image: libvips reads the header (the jobs and upload checks stay exactly libvips' view). */
async function openWithMetadata(bytes: Buffer, maxPixels: number, sniffed: 'jpeg' | 'png' | 'webp'): Promise<OpenedImage> {
  // The header is read with sharp's own pixel limit off, so that an oversized image is
  // answered 413 IMAGE_TOO_LARGE below rather than 400 by sharp; the decode is bounded
  // by that check (and by the output size: the image is shrunk while it is decoded).
  const image = sharp(bytes, { pages: 1, limitInputPixels: false });
  let meta: Metadata;
  try {
    meta = await image.metadata();
  } catch (err) {
    throw new Errors.INVALID_IMAGE(cleanSharpMessage(err));
  }
  const format = meta.format ?? 'unknown';
  if (!SUPPORTED_IMAGE_FORMATS.has(format) || format !== sniffed) {
    throw new Errors.UNSUPPORTED_MEDIA_TYPE(`(content is ${format})`);
  }
  if (!meta.width || !meta.height) throw new Errors.INVALID_IMAGE('no dimensions in the header');
  checkPixelCount(meta.width * meta.height, maxPixels);
  // EXIF orientations 5–8 turn the image by 90°: width and height swap.
  const turned = (meta.orientation ?? 1) >= 5;
  return { header: { format, width: turned ? meta.height : meta.width, height: turned ? meta.width : meta.height }, image };
}

function checkPixelCount(pixelCount: number, maxPixels: number): void {
  if (pixelCount > maxPixels) throw new Errors.IMAGE_TOO_LARGE(pixelCount, maxPixels);
}

/**
 * The size in a JPEG's frame header (SOF0–SOF15), read by walking the markers up to
 * the first scan; undefined for anything this walk does not vouch for, which then
 * goes to libvips' own header reader: an EXIF segment (its orientation may turn the
 * image), an ICC profile (sharp converts the colours to sRGB by it), a missing or
 * zero-sized frame, a cut or malformed marker.
 */
export function plainJpegSize(b: Buffer): { width: number; height: number } | undefined {
  let size: { width: number; height: number } | undefined;
  let p = 2;
  while (p < b.length) {
    if (b[p] !== 0xff) return undefined;
    while (p < b.length && b[p] === 0xff) p++; // fill bytes
    if (p >= b.length) return undefined;
    const marker = b[p++]!;
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue; // standalone markers
    if (marker === 0x00 || marker === 0xd8 || marker === 0xd9 || p + 2 > b.length) return undefined;
    const length = b.readUInt16BE(p);
    if (length < 2 || p + length > b.length) return undefined;
    if (marker === 0xda) return size; // SOS: the header is over
    if (marker === 0xe1 && length >= 8 && b.toString('latin1', p + 2, p + 8) === 'Exif\0\0') return undefined;
    if (marker === 0xe2 && length >= 14 && b.toString('latin1', p + 2, p + 14) === 'ICC_PROFILE\0') return undefined;
    // SOF0–SOF15 but DHT (C4), JPG (C8) and DAC (CC): precision, height, width.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (size || length < 8) return undefined;
      const height = b.readUInt16BE(p + 3);
      const width = b.readUInt16BE(p + 5);
      if (width === 0 || height === 0) return undefined;
      size = { width, height };
    }
    p += length;
  }
  return undefined;
}

/**
 * Decodes, orients and letterboxes one image off the event loop, in one pass from
 * the bytes to the model's input pixels: a plain JPEG at or above the input size by
 * the native decoder (decodeJpegNative), everything else by sharp. Both decode a
 * JPEG 3 or more times the input at a reduced DCT scale (libvips shrink-on-load, by
 * sharp's rule: nativeJpegScale; sharp does WebP likewise) and leave the rest to the
 * linear kernel: a 1280×720 JPEG for a 320 model decodes 640×360 pixels instead of 921 600
 * (bench/results/2026-12-03-inference-speed.md has the steps).
 */
export async function prepareImage(bytes: Buffer, options: PrepareOptions): Promise<PreparedImage> {
  return prepareOpened(await openImage(bytes, options.maxPixels), options);
}

/** prepareImage after openImage: for a caller that looks at the header first (tiling decides on it). */
export async function prepareOpened(opened: OpenedImage, options: Omit<PrepareOptions, 'maxPixels'>): Promise<PreparedImage> {
  const { header } = opened;
  const lb = letterboxGeometry(header.width, header.height, options.inputWidth, options.inputHeight);
  const native = opened.plainJpeg && (await decodeJpegNative(opened.plainJpeg, header, lb));
  if (native) return { pixels: native, letterbox: lb, format: header.format };
  const image = opened.image;
  let data: Buffer;
  let info: OutputInfo;
  try {
    ({ data, info } = await decodeSlots(() =>
      image
        .rotate()
        .removeAlpha()
        .toColourspace('srgb')
        // fastShrinkOnLoad (sharp's default, stated because the speed depends on it): the
        // decoder shrinks by the largest power of two that fits, the kernel does the rest.
        .resize(lb.scaledWidth, lb.scaledHeight, { fit: 'fill', kernel: 'linear', fastShrinkOnLoad: true })
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true }),
    ));
  } catch (err) {
    throw new Errors.INVALID_IMAGE(cleanSharpMessage(err));
  }
  if (info.channels !== 3 || info.width !== lb.scaledWidth || info.height !== lb.scaledHeight) {
    throw new Errors.INVALID_IMAGE(`decoded to ${info.width}×${info.height}×${info.channels}, expected RGB`);
  }
  decodeCounts.sharp++;
  return { pixels: padLetterbox(data, lb), letterbox: lb, format: header.format };
}

/**
 * The native decoder's path (src/inference/jpeg-native.ts): a plain JPEG at or above
 * the letterboxed size is decoded by libjpeg-turbo straight into the padded input,
 * at the DCT scale sharp would use and reduced as sharp would (the same pixels), with
 * no copy. An edge-resized 320×180 image costs 0.25 instead of 1.3 ms of CPU, a
 * 1280×720 frame for a 640 model 5.7 instead of 7.3 ms
 * (bench/results/2026-12-03-inference-speed.md). Undefined when it does not apply or
 * libjpeg refuses the file: sharp then decodes it and gives the error, if there is one.
 */
async function decodeJpegNative(bytes: Buffer, header: ImageHeader, lb: Letterbox): Promise<Uint8Array | undefined> {
  const native = nativeJpegDecoder();
  const denom = native && nativeJpegScale(header.width, header.height, lb.scaledWidth, lb.scaledHeight, native.scaled);
  if (!native || !denom) return undefined;
  const rowBytes = lb.inputWidth * 3;
  const out = paddedInput(lb);
  try {
    await decodeSlots(() => native.addon.decodeInto(bytes, denom, out, lb.scaledWidth, lb.scaledHeight, rowBytes, lb.padTop * rowBytes + lb.padLeft * 3));
  } catch {
    return undefined;
  }
  decodeCounts['libjpeg-turbo']++;
  return out;
}

/** A whole decoded image: upright RGB, uint8, HWC, width × height × 3. */
export interface RawImage {
  data: Buffer;
  width: number;
  height: number;
}

/**
 * Decodes the whole image at full resolution once, for tiling: every tile and the
 * full view are cut from these pixels, so a 5-megapixel frame is decoded once, not
 * once per tile. Bounded like every decode: openImage checked the pixel limit.
 */
export async function decodeRaw(opened: OpenedImage): Promise<RawImage> {
  let data: Buffer;
  let info: OutputInfo;
  try {
    ({ data, info } = await decodeSlots(() =>
      opened.image.rotate().removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true }),
    ));
  } catch (err) {
    throw new Errors.INVALID_IMAGE(cleanSharpMessage(err));
  }
  if (info.channels !== 3) throw new Errors.INVALID_IMAGE(`decoded to ${info.channels} channels, expected RGB`);
  return { data, width: info.width, height: info.height };
}

/** A rectangle of an image, in its pixels. */
export interface PixelRect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * One region of a decoded image as model input: letterboxed by `lb` (whose
 * width × height is the region's size). A region at native resolution (the usual
 * tile) is copied row by row from the raw pixels, with no resampling at all; a
 * region that must be scaled (a tile with scale > 1, the full view) goes through
 * sharp's extract and resize, with the kernel prepareImage uses.
 */
export async function regionPixels(raw: RawImage, rect: PixelRect, lb: Letterbox): Promise<Uint8Array> {
  if (lb.scaledWidth === rect.width && lb.scaledHeight === rect.height) {
    const rowBytes = lb.inputWidth * 3;
    const out = paddedInput(lb);
    const srcRow = raw.width * 3;
    for (let y = 0; y < rect.height; y++) {
      const start = (rect.y + y) * srcRow + rect.x * 3;
      out.set(raw.data.subarray(start, start + rect.width * 3), (lb.padTop + y) * rowBytes + lb.padLeft * 3);
    }
    return out;
  }
  let data: Buffer;
  try {
    data = await decodeSlots(() =>
      sharp(raw.data, { raw: { width: raw.width, height: raw.height, channels: 3 }, limitInputPixels: false })
        .extract({ left: rect.x, top: rect.y, width: rect.width, height: rect.height })
        .resize(lb.scaledWidth, lb.scaledHeight, { fit: 'fill', kernel: 'linear' })
        .raw({ depth: 'uchar' })
        .toBuffer(),
    );
  } catch (err) {
    throw new Errors.INVALID_IMAGE(cleanSharpMessage(err));
  }
  return padLetterbox(data, lb);
}

/** The model input of `lb`'s size, all padding: each path writes the scaled image into it. */
function paddedInput(lb: Letterbox): Uint8Array {
  return new Uint8Array(lb.inputWidth * 3 * lb.inputHeight).fill(LETTERBOX_PAD_VALUE);
}

/**
 * Places the scaled image in the padded model input. Done here rather than with
 * sharp's extend(): copying rows costs a fraction of a millisecond, while extend
 * measured several milliseconds per 640×640 image.
 */
function padLetterbox(scaled: Buffer, lb: Letterbox): Uint8Array {
  const rowBytes = lb.inputWidth * 3;
  const scaledRowBytes = lb.scaledWidth * 3;
  const out = paddedInput(lb);
  for (let y = 0; y < lb.scaledHeight; y++) {
    const start = y * scaledRowBytes;
    out.set(scaled.subarray(start, start + scaledRowBytes), (lb.padTop + y) * rowBytes + lb.padLeft * 3);
  }
  return out;
}

function cleanSharpMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0]!.trim().slice(0, 200);
}

/** uint8 HWC RGB → float32 NCHW in [0, 1], written at `offset` of `out`. */
export function hwcToChwFloat(pixels: Uint8Array, width: number, height: number, out: Float32Array, offset = 0): void {
  const plane = width * height;
  const scale = 1 / 255;
  for (let i = 0, p = 0; i < plane; i++, p += 3) {
    out[offset + i] = pixels[p]! * scale;
    out[offset + plane + i] = pixels[p + 1]! * scale;
    out[offset + 2 * plane + i] = pixels[p + 2]! * scale;
  }
}
