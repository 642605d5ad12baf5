import sharp from 'sharp';
import type { Detection } from '../protocol/results.js';

/** Box colours: a detection that makes the verdict NG, and any other. */
export const NG_COLOUR = '#ff0000';
export const OTHER_COLOUR = '#ffb000';

export interface RenderOptions {
  /** Boxes in the image's own pixels (after EXIF orientation, as inference saw it), with whether each makes it NG. */
  boxes?: { detections: readonly Detection[]; isNg: (detection: Detection) => boolean };
  /** Output width in pixels; the height keeps the aspect ratio. Never enlarged. */
  width?: number;
  /** Decoding limit, as for inference (max_image_pixels). */
  maxPixels?: number;
}

/**
 * The image as JPEG, oriented as inference saw it, resized to `width` and with
 * the boxes drawn (sharp composites an SVG). Boxes are drawn on the resized
 * image, scaled to it, so that lines and labels stay readable on thumbnails.
 */
export async function renderJpeg(bytes: Buffer, options: RenderOptions = {}): Promise<Buffer> {
  const base = sharp(bytes, { pages: 1, limitInputPixels: options.maxPixels ?? 0 }).rotate();
  if (options.width !== undefined) base.resize({ width: options.width, withoutEnlargement: true });
  if (!options.boxes || options.boxes.detections.length === 0) return base.jpeg({ quality: 85 }).toBuffer();
  // Resize (and rotate) first, to raw pixels whose size the overlay must match.
  const { data, info } = await base.raw().toBuffer({ resolveWithObject: true });
  const meta = await sharp(bytes, { pages: 1, limitInputPixels: options.maxPixels ?? 0 }).metadata();
  // EXIF orientations 5–8 turn the image a quarter: its oriented width is the stored height.
  const orientedWidth = (meta.orientation ?? 1) >= 5 ? meta.height : meta.width;
  const scale = info.width / (orientedWidth || info.width);
  const svg = overlay(info.width, info.height, scale, options.boxes);
  return (
    sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } })
      .composite([{ input: Buffer.from(svg), top: 0, left: 0 }])
      // Full-resolution colour: 4:2:0 would smear thin red lines into the background.
      .jpeg({ quality: 85, chromaSubsampling: '4:4:4' })
      .toBuffer()
  );
}

function overlay(width: number, height: number, scale: number, boxes: NonNullable<RenderOptions['boxes']>): string {
  const stroke = Math.max(3, Math.round(Math.min(width, height) / 150));
  const font = Math.max(10, Math.round(Math.min(width, height) / 40));
  const parts: string[] = [];
  for (const d of boxes.detections) {
    const colour = boxes.isNg(d) ? NG_COLOUR : OTHER_COLOUR;
    const x = d.box.x1 * scale;
    const y = d.box.y1 * scale;
    const w = Math.max(1, (d.box.x2 - d.box.x1) * scale);
    const h = Math.max(1, (d.box.y2 - d.box.y1) * scale);
    parts.push(`<rect x="${r(x)}" y="${r(y)}" width="${r(w)}" height="${r(h)}" fill="none" stroke="${colour}" stroke-width="${stroke}"/>`);
    const text = `${d.label} ${d.score.toFixed(2)}`;
    const labelHeight = Math.round(font * 1.3);
    const labelWidth = Math.round(text.length * font * 0.62 + font * 0.4);
    // Above the box; inside its top edge when the box touches the image's top.
    const top = y - labelHeight >= 0 ? y - labelHeight : y;
    const left = Math.min(Math.max(0, x - stroke / 2), Math.max(0, width - labelWidth));
    parts.push(`<rect x="${r(left)}" y="${r(top)}" width="${labelWidth}" height="${labelHeight}" fill="${colour}"/>`);
    parts.push(
      `<text x="${r(left + font * 0.2)}" y="${r(top + font * 1.02)}" font-family="sans-serif" font-size="${font}" fill="#000000">${escapeXml(text)}</text>`,
    );
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">${parts.join('')}</svg>`;
}

const r = (n: number) => Math.round(n * 10) / 10;

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] ?? c);
}

/** Any image as JPEG (latest frames are served as JPEG whatever the camera sent). */
export async function toJpeg(bytes: Buffer, maxPixels?: number): Promise<Buffer> {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return bytes;
  return sharp(bytes, { pages: 1, limitInputPixels: maxPixels ?? 0 })
    .rotate()
    .jpeg({ quality: 85 })
    .toBuffer();
}
