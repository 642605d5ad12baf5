import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * The native JPEG decoder (native/jpeg-decode: libjpeg-turbo with DCT scaling and
 * libvips' linear reduce, straight into the letterboxed model input, on the libuv
 * thread pool). It is built at install time where a C compiler and libjpeg's headers
 * exist (scripts/build-native.mjs); where it is not built, or native_jpeg_decoder is
 * off, sharp decodes everything, as it always did (docs/batching.md#decoding).
 */
interface JpegAddon {
  /**
   * Decodes `input` at 1/scaleDenom, reduced to width × height as sharp's linear
   * resize would where that is larger, into `output`, row r at offset + r × rowStride;
   * rejects on anything libjpeg warns about and on a size it does not reduce as sharp.
   */
  decodeInto(input: Uint8Array, scaleDenom: number, output: Uint8Array, width: number, height: number, rowStride: number, offset: number): Promise<void>;
}

/** Relative to this module in src/inference and dist/inference alike. */
export const JPEG_ADDON_PATH = fileURLToPath(new URL('../../native/jpeg-decode/build/Release/jpeg_decode.node', import.meta.url));

/** Which plain JPEGs the native decoder takes (config native_jpeg_decoder). */
export type NativeJpegMode = 'exact' | 'scaled' | 'off';

let loaded: { addon?: JpegAddon; error?: string } | undefined;
let mode: NativeJpegMode = 'exact';

function load(): { addon?: JpegAddon; error?: string } {
  if (!loaded) {
    try {
      loaded = { addon: createRequire(import.meta.url)(JPEG_ADDON_PATH) as JpegAddon };
    } catch (err) {
      loaded = { error: (err instanceof Error ? err.message : String(err)).split('\n')[0] };
    }
  }
  return loaded;
}

/** Sets which JPEGs the native decoder takes (config native_jpeg_decoder); off, sharp decodes every image. */
export function setNativeJpegDecoder(to: NativeJpegMode): void {
  mode = to;
}

/** The decoder when it is built and on, and whether it may decode at a reduced DCT scale. */
export function nativeJpegDecoder(): { addon: JpegAddon; scaled: boolean } | undefined {
  const addon = mode === 'off' ? undefined : load().addon;
  return addon && { addon, scaled: mode === 'scaled' };
}

/** What decodes JPEGs, for the startup log: the native decoder, or sharp and why. */
export function jpegDecoderStatus(): { decoder: 'libjpeg-turbo' | 'sharp'; reason?: string } {
  if (mode === 'off') return { decoder: 'sharp', reason: 'native_jpeg_decoder is off' };
  const { addon, error } = load();
  return addon ? { decoder: 'libjpeg-turbo' } : { decoder: 'sharp', reason: `native decoder not built (${error}); npm run build:native builds it` };
}

/**
 * The DCT scale the native decoder decodes a width × height JPEG at for a
 * scaledWidth × scaledHeight model input; undefined when it leaves the image to sharp.
 *
 * By default (and in `scaled` mode where the next rule does not apply) it is the
 * scale sharp picks (its JPEG shrink-on-load with fastShrinkOnLoad: the largest of
 * 8, 4, 2 that the smaller of the two factors reaches, halved when the factor's
 * whole part equals it). The addon then resamples what libvips keeps of that decode
 * with libvips' linear reduce, so the model gets sharp's pixels exactly
 * (native/jpeg-decode/linear_reduce.c). Sharp enlarges a smaller image with another
 * operation, so anything but a reduction is sharp's, as is a reduce that libvips
 * starts with a box shrink (a factor of 4 or more left after the DCT scale).
 *
 * With `scaled`, a frame whose size libjpeg's DCT scaling reaches exactly (1/2, 1/4,
 * 1/8; libjpeg rounds scaled sizes up) is decoded at that scale with no resampling at
 * all: cheaper, but the model sees other pixels (1–4 grey levels apart on average),
 * and the built-in model's held-out mAP50-95 fell by 0.004 at 1/2 and 0.006 at 1/4
 * (bench/results/2026-12-03-inference-speed.md, eighth pass).
 */
export function nativeJpegScale(width: number, height: number, scaledWidth: number, scaledHeight: number, scaled: boolean): 1 | 2 | 4 | 8 | undefined {
  if (scaled) {
    for (const denom of [8, 4, 2] as const) {
      if (Math.ceil(width / denom) === scaledWidth && Math.ceil(height / denom) === scaledHeight) return denom;
    }
  }
  if (scaledWidth > width || scaledHeight > height) return undefined;
  // sharp's pipeline.cc: ResolveShrink for fit 'fill', then its JPEG shrink-on-load.
  const shrink = Math.min(width / scaledWidth, height / scaledHeight);
  let denom: 1 | 2 | 4 | 8 = shrink >= 8 ? 8 : shrink >= 4 ? 4 : shrink >= 2 ? 2 : 1;
  if (denom > 1 && Math.trunc(shrink) === denom) denom = (denom / 2) as 1 | 2 | 4;
  // libvips keeps the scaled decode's whole pixels; from there a factor of 4 or more (a
  // thin image's short side) starts with a box shrink, which the addon does not do.
  const residual = Math.max(Math.floor(width / denom) / scaledWidth, Math.floor(height / denom) / scaledHeight);
  return Math.floor(residual / 2) > 1 ? undefined : denom;
}
