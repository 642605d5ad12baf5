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
 * The DCT scale (1/1, 1/2, 1/4, 1/8 where `scaled`, else only 1/1) at which
 * libjpeg's output is exactly the scaled size, the largest that is; undefined when
 * none is (the image then needs resampling, which sharp does). libjpeg rounds scaled
 * sizes up.
 *
 * Why 1/1 only by default: for a frame 2 or 4 times the input, sharp decodes at full
 * or half size and resamples with its linear kernel, while DCT scaling filters
 * differently; the model then sees other pixels (about 1–4 grey levels apart on
 * average), and the built-in model's held-out mAP50-95 fell by 0.004 at 1/2 and 0.006
 * at 1/4 (bench/results/2026-12-03-inference-speed.md, eighth pass).
 */
export function exactJpegScale(width: number, height: number, scaledWidth: number, scaledHeight: number, scaled: boolean): 1 | 2 | 4 | 8 | undefined {
  for (const denom of scaled ? ([8, 4, 2, 1] as const) : ([1] as const)) {
    if (Math.ceil(width / denom) === scaledWidth && Math.ceil(height / denom) === scaledHeight) return denom;
  }
  return undefined;
}
