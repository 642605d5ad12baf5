import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * The native JPEG decoder (native/jpeg-decode: libjpeg-turbo with DCT scaling,
 * straight into the letterboxed model input, on the libuv thread pool). It is built
 * at install time where a C compiler and libjpeg's headers exist (scripts/
 * build-native.mjs); where it is not built, or native_jpeg_decoder is off, sharp
 * decodes everything, as it always did (docs/batching.md#decoding).
 */
interface JpegAddon {
  /** Decodes `input` at 1/scaleDenom into `output`, row r at offset + r × rowStride; rejects on anything libjpeg warns about. */
  decodeInto(input: Uint8Array, scaleDenom: number, output: Uint8Array, width: number, height: number, rowStride: number, offset: number): Promise<void>;
}

/** Relative to this module in src/inference and dist/inference alike. */
export const JPEG_ADDON_PATH = fileURLToPath(new URL('../../native/jpeg-decode/build/Release/jpeg_decode.node', import.meta.url));

let loaded: { addon?: JpegAddon; error?: string } | undefined;
let enabled = true;

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

/** Turns the native decoder on or off (config native_jpeg_decoder); off, sharp decodes every image. */
export function setNativeJpegDecoder(on: boolean): void {
  enabled = on;
}

/** The decoder when it is built and enabled. */
export function nativeJpegDecoder(): JpegAddon | undefined {
  return enabled ? load().addon : undefined;
}

/** What decodes JPEGs, for the startup log: the native decoder, or sharp and why. */
export function jpegDecoderStatus(): { decoder: 'libjpeg-turbo' | 'sharp'; reason?: string } {
  if (!enabled) return { decoder: 'sharp', reason: 'native_jpeg_decoder is off' };
  const { addon, error } = load();
  return addon ? { decoder: 'libjpeg-turbo' } : { decoder: 'sharp', reason: `native decoder not built (${error}); npm run build:native builds it` };
}

/**
 * The DCT scale (1/1, 1/2, 1/4, 1/8) at which libjpeg's output is exactly the
 * scaled size, the largest that is; undefined when none is (the image then needs
 * resampling, which sharp does). libjpeg rounds scaled sizes up.
 */
export function exactJpegScale(width: number, height: number, scaledWidth: number, scaledHeight: number): 1 | 2 | 4 | 8 | undefined {
  for (const denom of [8, 4, 2, 1] as const) {
    if (Math.ceil(width / denom) === scaledWidth && Math.ceil(height / denom) === scaledHeight) return denom;
  }
  return undefined;
}
