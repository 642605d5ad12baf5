import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import sharp, { type JpegOptions } from 'sharp';
import { imageDecodeCounts, prepareImage } from '../src/inference/preprocess.js';
import {
  JPEG_ADDON_PATH,
  type NativeJpegMode,
  jpegDecoderStatus,
  nativeJpegDecoder,
  nativeJpegScale,
  setNativeJpegDecoder,
} from '../src/inference/jpeg-native.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { repositoryOptions } from '../src/inference/from-config.js';
import { defaultConfig } from '../src/config/load.js';
import { createLogger } from '../src/logger.js';
import { requireOrSkip } from './helpers/requirements.js';

/**
 * The native JPEG decoder (native/jpeg-decode) against sharp, the reference: the same
 * model input where it applies, sharp wherever it does not, and the same refusals.
 */

/** A 1280×720 scene with edges and noise: shapes, so that scaling differences show. */
async function scene(width: number, height: number, options: JpegOptions = {}, greyscale = false): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
    <rect width="100%" height="100%" fill="#3a6"/>
    <circle cx="${width * 0.3}" cy="${height * 0.4}" r="${height * 0.2}" fill="#e33"/>
    <rect x="${width * 0.55}" y="${height * 0.2}" width="${width * 0.3}" height="${height * 0.5}" fill="#22c" transform="rotate(12)"/>
  </svg>`;
  const shapes = await sharp(Buffer.from(svg)).removeAlpha().raw().toBuffer();
  const noise = await sharp({ create: { width, height, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 12 } } })
    .raw()
    .toBuffer();
  for (let i = 0; i < shapes.length; i++) shapes[i] = Math.min(255, Math.max(0, shapes[i]! + noise[i]! - 128));
  const image = sharp(shapes, { raw: { width, height, channels: 3 } });
  return (greyscale ? image.greyscale() : image).jpeg({ quality: 90, ...options }).toBuffer();
}

const input = (size: number) => ({ inputWidth: size, inputHeight: size, maxPixels: 50_000_000 });

/** The model input sharp makes of `bytes` (the native decoder off), and which decoder took each. */
async function both(bytes: Buffer, size: number, mode: NativeJpegMode = 'exact') {
  setNativeJpegDecoder(mode);
  const before = { ...imageDecodeCounts() };
  const native = await prepareImage(bytes, input(size));
  const nativeTook = imageDecodeCounts()['libjpeg-turbo'] - before['libjpeg-turbo'];
  setNativeJpegDecoder('off');
  try {
    return { native, reference: await prepareImage(bytes, input(size)), nativeTook };
  } finally {
    setNativeJpegDecoder('exact');
  }
}

function difference(a: Uint8Array, b: Uint8Array): { max: number; mean: number } {
  assert.equal(a.length, b.length);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    sum += d;
    if (d > max) max = d;
  }
  return { max, mean: sum / a.length };
}

const built = nativeJpegDecoder() !== undefined;

describe('native JPEG decoder', () => {
  after(() => setNativeJpegDecoder('exact'));

  test('is built by npm install and used', (t) => {
    if (!requireOrSkip(t, built, `the native JPEG decoder (${JPEG_ADDON_PATH}, npm run build:native)`)) return;
    assert.deepEqual(jpegDecoderStatus(), { decoder: 'libjpeg-turbo' });
  });

  test('the decode scale: sharp’s shrink-on-load by default; with scaled, a DCT scale that reaches the size exactly', () => {
    // sharp's rule: the largest of 8, 4, 2 the smaller factor reaches, halved when the factor's whole part equals it.
    assert.equal(nativeJpegScale(320, 180, 320, 180, false), 1);
    assert.equal(nativeJpegScale(1280, 720, 640, 360, false), 1, 'a factor of 2: full size, then the kernel');
    assert.equal(nativeJpegScale(1280, 720, 320, 180, false), 2, 'a factor of 4: 1/2, then the kernel');
    assert.equal(nativeJpegScale(1280, 720, 416, 234, false), 2, 'a factor of 3.08');
    assert.equal(nativeJpegScale(2560, 1440, 320, 180, false), 4);
    assert.equal(nativeJpegScale(4000, 3000, 320, 240, false), 8, 'a factor of 12.5');
    assert.equal(nativeJpegScale(640, 480, 416, 312, false), 1);
    assert.equal(nativeJpegScale(200, 150, 320, 240, false), undefined, 'enlarging is sharp’s');
    assert.equal(nativeJpegScale(320, 180, 320, 181, false), undefined);
    assert.equal(nativeJpegScale(1280, 720, 320, 180, true), 4);
    assert.equal(nativeJpegScale(1280, 720, 640, 360, true), 2);
    assert.equal(nativeJpegScale(2560, 1440, 320, 180, true), 8);
    assert.equal(nativeJpegScale(1277, 719, 320, 180, true), 4, 'libjpeg rounds a scaled size up');
    assert.equal(nativeJpegScale(1920, 1080, 640, 360, true), 2, 'a factor of 3: no DCT scale reaches it, so sharp’s rule');
  });

  test('an image at the model input size (edge resize) decodes to exactly what sharp makes, letterbox included', async (t) => {
    if (!requireOrSkip(t, built, 'the native JPEG decoder')) return;
    for (const [w, h, size, options] of [
      [320, 180, 320, {}],
      [640, 360, 640, { progressive: true }],
      [180, 320, 320, { chromaSubsampling: '4:4:4' }],
    ] as const) {
      const { native, reference, nativeTook } = await both(await scene(w, h, options), size);
      assert.equal(nativeTook, 1, `${w}×${h} went to the native decoder`);
      assert.deepEqual(native.letterbox, reference.letterbox);
      const d = difference(native.pixels, reference.pixels);
      assert.ok(d.max <= 2 && d.mean < 0.01, `${w}×${h} → ${size}: ${JSON.stringify(d)}`);
    }
  });

  test('a greyscale JPEG becomes the same RGB input as with sharp', async (t) => {
    if (!requireOrSkip(t, built, 'the native JPEG decoder')) return;
    const { native, reference, nativeTook } = await both(await scene(320, 240, {}, true), 320);
    assert.equal(nativeTook, 1);
    assert.ok(difference(native.pixels, reference.pixels).max <= 2);
  });

  test('a frame larger than the input decodes to exactly what sharp makes: its DCT scale, then libvips’ linear reduce', async (t) => {
    if (!requireOrSkip(t, built, 'the native JPEG decoder')) return;
    const frame = await scene(1280, 720);
    for (const size of [640, 416, 320, 160]) {
      const { native, reference, nativeTook } = await both(frame, size);
      assert.equal(nativeTook, 1, `1280×720 → ${size} went to the native decoder`);
      assert.deepEqual(native.letterbox, reference.letterbox);
      assert.deepEqual(difference(native.pixels, reference.pixels), { max: 0, mean: 0 }, `1280×720 → ${size}`);
    }
  });

  test('sizes at random, odd ones, every DCT scale: the native decoder gives sharp’s pixels to the last bit', async (t) => {
    if (!requireOrSkip(t, built, 'the native JPEG decoder')) return;
    const base = await scene(1600, 1000);
    let seed = 19;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const scales = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const width = 24 + Math.floor(random() * 1570);
      const height = 24 + Math.floor(random() * 970);
      const size = 16 + Math.floor(random() * Math.min(width, height, 640));
      const subsampling = (['4:2:0', '4:4:4'] as const)[i % 2];
      const bytes = await sharp(base)
        .resize(width, height, { fit: 'fill' })
        .jpeg({ quality: 60 + Math.floor(random() * 40), chromaSubsampling: subsampling, progressive: i % 3 === 0 })
        .toBuffer();
      const { native, reference, nativeTook } = await both(bytes, size);
      const lb = native.letterbox;
      const scale = nativeJpegScale(width, height, lb.scaledWidth, lb.scaledHeight, false);
      if (scale) scales.add(scale);
      // A reduce by 4 or more after the DCT scale (a thin image's short side) is sharp's: libvips box-shrinks first.
      assert.equal(nativeTook, scale ? 1 : 0, `${width}×${height} → ${lb.scaledWidth}×${lb.scaledHeight}: the native decoder took it, or sharp`);
      assert.deepEqual(difference(native.pixels, reference.pixels), { max: 0, mean: 0 }, `${width}×${height} ${subsampling} → ${size}`);
    }
    assert.deepEqual([...scales].sort(), [1, 2, 4, 8], 'the draw covered every DCT scale');
    assert.equal(nativeJpegScale(558, 38, 19, 1, false), undefined, 'from 38 rows to 1 libvips box-shrinks first');
  });

  test('with scaled, a frame 2 or 4 times the input size is decoded at that DCT scale, close to sharp’s', async (t) => {
    if (!requireOrSkip(t, built, 'the native JPEG decoder')) return;
    const frame = await scene(1280, 720);
    for (const size of [320, 640]) {
      const { native, reference, nativeTook } = await both(frame, size, 'scaled');
      assert.equal(nativeTook, 1);
      // Different filters (DCT scaling against sharp's decode and linear kernel): the
      // same picture, a few grey levels apart on average, more only on sharp edges.
      const d = difference(native.pixels, reference.pixels);
      assert.ok(d.max > 0 && d.mean < 5, `1280×720 → ${size}: ${JSON.stringify(d)}`);
    }
  });

  test('what it does not vouch for goes to sharp: a smaller image, CMYK, an ICC profile', async (t) => {
    if (!requireOrSkip(t, built, 'the native JPEG decoder')) return;
    const cmyk = await sharp(await scene(320, 180))
      .toColourspace('cmyk')
      .jpeg()
      .toBuffer();
    const icc = await sharp(await scene(320, 180))
      .withIccProfile('p3')
      .jpeg()
      .toBuffer();
    for (const [name, bytes] of [
      ['200×150, enlarged', await scene(200, 150)],
      ['CMYK', cmyk],
      ['ICC profile', icc],
    ] as const) {
      const { native, reference, nativeTook } = await both(bytes, 320);
      assert.equal(nativeTook, 0, `${name} went to sharp`);
      assert.deepEqual(native.pixels, reference.pixels, name);
    }
  });

  test('a cut or corrupt JPEG is refused with the same INVALID_IMAGE as sharp gives', async (t) => {
    if (!requireOrSkip(t, built, 'the native JPEG decoder')) return;
    const whole = await scene(320, 180);
    const cut = whole.subarray(0, Math.floor(whole.length * 0.6));
    const corrupt = Buffer.from(whole);
    // Garbage in the middle of the entropy-coded data: libjpeg warns, and a warning fails.
    corrupt.fill(0xff, Math.floor(whole.length * 0.5), Math.floor(whole.length * 0.5) + 40);
    for (const bytes of [cut, corrupt]) {
      const failure = await prepareImage(bytes, input(320)).then(
        () => undefined,
        (err: { code?: string; message: string }) => err,
      );
      setNativeJpegDecoder('off');
      const reference = await prepareImage(bytes, input(320)).then(
        () => undefined,
        (err: { code?: string; message: string }) => err,
      );
      setNativeJpegDecoder('exact');
      assert.equal(failure?.code, reference?.code);
      assert.equal(failure?.message, reference?.message);
      assert.equal(failure?.code, 'INVALID_IMAGE');
    }
  });

  test('mutated JPEGs (bytes overwritten, cut short): the native path accepts and refuses exactly what sharp does, and never crashes', async (t) => {
    if (!requireOrSkip(t, built, 'the native JPEG decoder')) return;
    // Input-size JPEGs, so that every one that parses reaches the native decoder first.
    const base = await sharp({ create: { width: 64, height: 48, channels: 3, background: 'grey', noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
      .jpeg({ quality: 85 })
      .toBuffer();
    let seed = 7;
    const random = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const outcome = (bytes: Buffer): Promise<{ pixels?: Uint8Array; error?: string }> =>
      prepareImage(bytes, input(64)).then(
        (p) => ({ pixels: p.pixels }),
        (err: { code?: string; message: string }) => ({ error: `${err.code}: ${err.message}` }),
      );
    const tally = { decoded: 0, refused: 0 };
    const nativeBefore = imageDecodeCounts()['libjpeg-turbo'];
    for (let i = 0; i < 400; i++) {
      const mutated = Buffer.from(base);
      for (let k = 1 + Math.floor(random() * 6); k > 0; k--) mutated[2 + Math.floor(random() * (mutated.length - 2))] = Math.floor(random() * 256);
      const bytes = random() < 0.3 ? mutated.subarray(0, 2 + Math.floor(random() * (mutated.length - 2))) : mutated;
      const native = await outcome(bytes);
      setNativeJpegDecoder('off');
      const reference = await outcome(bytes);
      setNativeJpegDecoder('exact');
      assert.equal(native.error, reference.error, `case ${i}`);
      if (native.pixels && reference.pixels) {
        assert.ok(difference(native.pixels, reference.pixels).max <= 2, `case ${i}`);
        tally.decoded++;
      } else tally.refused++;
    }
    // Both kinds occur, so the comparison covers decodes and refusals alike.
    assert.ok(tally.decoded > 20 && tally.refused > 20, JSON.stringify(tally));
    assert.ok(imageDecodeCounts()['libjpeg-turbo'] - nativeBefore > 20, 'the native decoder took the decodable ones');
  });

  test('native_jpeg_decoder off: sharp decodes every image', async (t) => {
    if (!requireOrSkip(t, built, 'the native JPEG decoder')) return;
    setNativeJpegDecoder('off');
    const before = { ...imageDecodeCounts() };
    await prepareImage(await scene(320, 180), input(320));
    assert.equal(imageDecodeCounts()['libjpeg-turbo'], before['libjpeg-turbo']);
    assert.equal(imageDecodeCounts().sharp, before.sharp + 1);
    assert.equal(jpegDecoderStatus().decoder, 'sharp');
    setNativeJpegDecoder('exact');
  });

  test('the addon checks its arguments: a wrong call throws or rejects, it never writes outside the buffer', async (t) => {
    if (!requireOrSkip(t, built, 'the native JPEG decoder')) return;
    const addon = createRequire(import.meta.url)(JPEG_ADDON_PATH) as NonNullable<ReturnType<typeof nativeJpegDecoder>>['addon'];
    const bytes = await scene(320, 180);
    const out = new Uint8Array(320 * 180 * 3);
    assert.throws(() => addon.decodeInto(bytes, 3, out, 320, 180, 960, 0), RangeError);
    assert.throws(() => addon.decodeInto(bytes, 1, out, 320, 180, 100, 0), RangeError);
    assert.throws(() => (addon.decodeInto as (...a: unknown[]) => unknown)('x', 1, out, 320, 180, 960, 0), TypeError);
    await assert.rejects(addon.decodeInto(bytes, 1, out, 320, 180, 960, 3), /output buffer too small/);
    await assert.rejects(addon.decodeInto(bytes, 1, out, 640, 360, 1920, 0), /not one sharp's linear reduce takes/, 'enlarging');
    await assert.rejects(addon.decodeInto(bytes, 1, out, 320, 40, 960, 0), /not one sharp's linear reduce takes/, 'a factor of 4.5: libvips box-shrinks first');
    // A reduce whose last row would end past the buffer is refused before anything is written.
    await assert.rejects(addon.decodeInto(bytes, 1, new Uint8Array(160 * 90 * 3 - 1), 160, 90, 480, 0), /output buffer too small/);
    await addon.decodeInto(bytes, 1, out, 320, 180, 960, 0);
  });

  test('config native_jpeg_decoder reaches the decoder, and the startup log says which decodes', async (t) => {
    if (!requireOrSkip(t, built, 'the native JPEG decoder')) return;
    const lines: { event?: string; decoder?: string; msg: string }[] = [];
    const logger = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) });
    const frame = await scene(320, 180);
    try {
      for (const [mode, decoder] of [
        ['off', 'sharp'],
        ['exact', 'libjpeg-turbo'],
      ] as const) {
        repositoryOptions(defaultConfig({ native_jpeg_decoder: mode }), logger, {}, 2);
        const logged = lines.filter((l) => l.event === 'jpeg_decoder').at(-1);
        assert.equal(logged?.decoder, decoder, mode);
        const before = imageDecodeCounts()[decoder];
        await prepareImage(frame, input(320));
        assert.equal(imageDecodeCounts()[decoder], before + 1, `${mode}: ${decoder} decoded it`);
      }
      assert.match(lines.find((l) => l.decoder === 'sharp')!.msg, /native_jpeg_decoder is off/);
    } finally {
      setNativeJpegDecoder('exact');
    }
  });

  test('/metrics counts decodes by decoder', async () => {
    await prepareImage(await scene(320, 180), input(320));
    const metrics = createMetrics({ imageDecodes: imageDecodeCounts });
    const text = await metrics.registry.metrics();
    const counts = imageDecodeCounts();
    for (const [decoder, n] of Object.entries(counts)) assert.match(text, new RegExp(`sightline_image_decodes_total\\{decoder="${decoder}"\\} ${n}\\b`));
    assert.ok(counts.sharp + counts['libjpeg-turbo'] > 0);
  });
});
