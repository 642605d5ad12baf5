import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp, { type JpegOptions } from 'sharp';
import { inspectImage, openImage, plainJpegSize, prepareImage } from '../src/inference/preprocess.js';

/** A noisy RGB JPEG of the given size (noise, so the scan is not trivially small). */
async function jpeg(width: number, height: number, options: JpegOptions = {}): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: 'grey', noise: { type: 'gaussian', mean: 128, sigma: 30 } } })
    .jpeg(options)
    .toBuffer();
}

/** Offset of the first SOFn segment's marker byte (after FF). */
function sofOffset(b: Buffer): number {
  for (let p = 2; p < b.length; ) {
    const marker = b[p + 1]!;
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) return p + 1;
    p += 2 + b.readUInt16BE(p + 2);
  }
  throw new Error('no SOF');
}

describe('JPEG frame size read without libvips (the decode path calls sharp once)', () => {
  test('agrees with libvips for baseline, progressive, 4:4:4 and greyscale JPEGs of odd sizes', async () => {
    const cases: [number, number, JpegOptions][] = [
      [641, 359, {}],
      [1280, 720, { progressive: true }],
      [33, 1001, { chromaSubsampling: '4:4:4' }],
      [1, 1, {}],
      [4000, 3, { quality: 100 }],
    ];
    for (const [width, height, options] of cases) {
      const bytes = await jpeg(width, height, options);
      const meta = await sharp(bytes).metadata();
      assert.deepEqual(plainJpegSize(bytes), { width: meta.width, height: meta.height }, JSON.stringify(options));
      assert.deepEqual((await openImage(bytes, 1e8)).header, await inspectImage(bytes, 1e8));
    }
    const grey = await sharp(await jpeg(300, 200))
      .greyscale()
      .jpeg()
      .toBuffer();
    assert.deepEqual(plainJpegSize(grey), { width: 300, height: 200 });
  });

  test('an EXIF segment goes to libvips, whose orientation turns the image', async () => {
    const rotated = await sharp(await jpeg(600, 400))
      .withMetadata({ orientation: 6 })
      .jpeg()
      .toBuffer();
    assert.equal(plainJpegSize(rotated), undefined);
    const opened = await openImage(rotated, 1e8);
    assert.deepEqual(opened.header, { format: 'jpeg', width: 400, height: 600 });
    const prepared = await prepareImage(rotated, { inputWidth: 320, inputHeight: 320, maxPixels: 1e8 });
    assert.equal(prepared.letterbox.scaledWidth, 213);
    assert.equal(prepared.letterbox.scaledHeight, 320);
  });

  test('anything the walk cannot vouch for is left to libvips', async () => {
    const bytes = await jpeg(64, 48);
    const sof = sofOffset(bytes);
    assert.equal(plainJpegSize(bytes.subarray(0, sof + 4)), undefined, 'cut inside the frame header');
    assert.equal(plainJpegSize(bytes.subarray(0, sof - 1)), undefined, 'cut before the frame header');
    const zero = Buffer.from(bytes);
    zero.writeUInt16BE(0, sof + 4); // height 0: defined later by a DNL marker
    assert.equal(plainJpegSize(zero), undefined);
    const garbage = Buffer.from(bytes);
    garbage[2] = 0x12; // not a marker where one must be
    assert.equal(plainJpegSize(garbage), undefined);
    const twoFrames = Buffer.concat([bytes.subarray(0, sof - 1), bytes.subarray(sof - 1, sof + 1 + bytes.readUInt16BE(sof + 1)), bytes.subarray(sof - 1)]);
    assert.equal(plainJpegSize(twoFrames), undefined);
  });

  test('a frame header claiming more pixels than allowed is 413 before any decode; a cut scan is still 400', async () => {
    const bytes = await jpeg(64, 48);
    const sof = sofOffset(bytes);
    const bomb = Buffer.from(bytes);
    bomb.writeUInt16BE(60_000, sof + 4);
    bomb.writeUInt16BE(60_000, sof + 6);
    await assert.rejects(openImage(bomb, 4_000_000), (err: { code: string; statusCode: number }) => err.code === 'IMAGE_TOO_LARGE' && err.statusCode === 413);
    const cut = bytes.subarray(0, Math.floor(bytes.length / 2));
    assert.deepEqual(plainJpegSize(cut), { width: 64, height: 48 });
    await assert.rejects(prepareImage(cut, { inputWidth: 32, inputHeight: 32, maxPixels: 1e8 }), (err: { code: string }) => err.code === 'INVALID_IMAGE');
  });

  test('the decoder gets the pixel limit too, as a second check on the frame header', async () => {
    // Both read the first frame header, so no real file makes them disagree; the
    // instance's own limit is what would stop one, so it is checked where sharp keeps it.
    const opened = await openImage(await jpeg(200, 100), 30_000);
    const input = (opened.image as unknown as { options: { input: { limitInputPixels: number } } }).options.input;
    assert.equal(input.limitInputPixels, 30_000);
    const viaLibvips = await openImage(
      await sharp(await jpeg(200, 100))
        .png()
        .toBuffer(),
      30_000,
    );
    assert.equal((viaLibvips.image as unknown as { options: { input: { limitInputPixels: number } } }).options.input.limitInputPixels, 0);
  });
});
