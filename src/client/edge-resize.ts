/**
 * Edge resize: the camera side scales an image down to the model's input size
 * before sending it, so the network and the server's decoder carry a fraction of
 * the pixels; the original's size travels as `source_width` / `source_height` and
 * the server answers boxes in the original's pixels (docs/sdk.md#edge-resize).
 */

/** The box the image must fit in: the model's input size (e.g. 640 for 640 × 640). */
export type EdgeResize = number | { width: number; height: number };

export interface EdgeResized {
  /** The image to send: scaled to fit, aspect ratio kept, or the input itself when it already fits. */
  image: Uint8Array;
  /** The original's upright size (after EXIF orientation); absent when the image was sent as it is. */
  source?: { width: number; height: number };
  contentType?: string;
}

/**
 * Scales `image` to fit `fit` with its aspect ratio kept (never enlarged), upright
 * (EXIF orientation applied, as the server would), re-encoded in its own format
 * (JPEG at quality 95: the scaled copy must not add artefacts the model would see).
 * sharp is loaded on first use only, so the SDK stays light for callers without it.
 */
export async function edgeResize(image: Uint8Array, fit: EdgeResize): Promise<EdgeResized> {
  const { default: sharp } = await import('sharp');
  const box = typeof fit === 'number' ? { width: fit, height: fit } : fit;
  const input = sharp(image, { pages: 1 });
  const meta = await input.metadata();
  if (!meta.width || !meta.height) return { image };
  const turned = (meta.orientation ?? 1) >= 5;
  const width = turned ? meta.height : meta.width;
  const height = turned ? meta.width : meta.height;
  if (width <= box.width && height <= box.height) return { image };
  const scaled = input.rotate().resize(box.width, box.height, { fit: 'inside', withoutEnlargement: true, kernel: 'linear' });
  const [out, contentType] =
    meta.format === 'png'
      ? [await scaled.png({ compressionLevel: 1 }).toBuffer(), 'image/png']
      : meta.format === 'webp'
        ? [await scaled.webp({ quality: 95 }).toBuffer(), 'image/webp']
        : [await scaled.jpeg({ quality: 95 }).toBuffer(), 'image/jpeg'];
  return { image: out, source: { width, height }, contentType };
}
