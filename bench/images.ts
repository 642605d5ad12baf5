/**
 * Test images: real 1280×720 JPEGs (quality 90) with gradients, shapes and sensor-like
 * noise, so that decode cost is what a camera image costs. Deterministic per index.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';

export const IMAGE_WIDTH = 1280;
export const IMAGE_HEIGHT = 720;

/** Tiny deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function colour(r: () => number): string {
  const c = () => Math.floor(40 + r() * 200);
  return `rgb(${c()},${c()},${c()})`;
}

function sceneSvg(index: number): string {
  const r = rng(1000 + index);
  const angle = Math.floor(r() * 360);
  const shapes: string[] = [];
  const count = 6 + Math.floor(r() * 20);
  for (let i = 0; i < count; i++) {
    const x = Math.floor(r() * IMAGE_WIDTH);
    const y = Math.floor(r() * IMAGE_HEIGHT);
    const s = 10 + Math.floor(r() * 220);
    const kind = Math.floor(r() * 4);
    const fill = colour(r);
    if (kind === 0) shapes.push(`<circle cx="${x}" cy="${y}" r="${s / 2}" fill="${fill}"/>`);
    else if (kind === 1)
      shapes.push(`<rect x="${x}" y="${y}" width="${s}" height="${s * (0.3 + r())}" fill="${fill}" transform="rotate(${Math.floor(r() * 90)} ${x} ${y})"/>`);
    else if (kind === 2)
      shapes.push(
        `<line x1="${x}" y1="${y}" x2="${x + s * 2 * (r() - 0.5)}" y2="${y + s * 2 * (r() - 0.5)}" stroke="${fill}" stroke-width="${1 + Math.floor(r() * 6)}"/>`,
      );
    else shapes.push(`<ellipse cx="${x}" cy="${y}" rx="${s}" ry="${s / 3}" fill="${fill}" opacity="0.7"/>`);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${IMAGE_WIDTH}" height="${IMAGE_HEIGHT}">
  <defs><linearGradient id="g" gradientTransform="rotate(${angle} 0.5 0.5)">
    <stop offset="0" stop-color="${colour(r)}"/><stop offset="1" stop-color="${colour(r)}"/>
  </linearGradient></defs>
  <rect width="100%" height="100%" fill="url(#g)"/>
  ${shapes.join('\n  ')}
</svg>`;
}

/** One 1280×720 JPEG: an SVG scene with Gaussian noise blended in (sigma varies per image). */
export async function makeJpeg(index: number): Promise<Buffer> {
  const scene = await sharp(Buffer.from(sceneSvg(index)))
    .removeAlpha()
    .raw()
    .toBuffer();
  const sigma = 4 + (index % 4) * 4;
  const noise = await sharp({
    create: { width: IMAGE_WIDTH, height: IMAGE_HEIGHT, channels: 3, background: { r: 0, g: 0, b: 0 }, noise: { type: 'gaussian', mean: 128, sigma } },
  })
    .raw()
    .toBuffer();
  const mixed = Buffer.alloc(scene.length);
  for (let i = 0; i < scene.length; i++) mixed[i] = Math.min(255, Math.max(0, scene[i]! + noise[i]! - 128));
  return sharp(mixed, { raw: { width: IMAGE_WIDTH, height: IMAGE_HEIGHT, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
}

/** Writes `count` JPEGs into `dir` and returns their bytes. */
export async function generateImages(dir: string, count: number): Promise<Buffer[]> {
  await mkdir(dir, { recursive: true });
  const images: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const jpeg = await makeJpeg(i);
    await writeFile(join(dir, `img${String(i).padStart(2, '0')}.jpg`), jpeg);
    images.push(jpeg);
  }
  return images;
}

/** Reads every .jpg/.jpeg in `dir` (sorted by name). */
export async function loadImages(dir: string): Promise<Buffer[]> {
  const names = (await readdir(dir)).filter((n) => /\.jpe?g$/i.test(n)).sort();
  if (names.length === 0) throw new Error(`no JPEG images in ${dir}`);
  return Promise.all(names.map((n) => readFile(join(dir, n))));
}
