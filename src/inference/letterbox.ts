import type { Box } from '../protocol/results.js';

/**
 * Geometry of an Ultralytics-style letterbox: the image is scaled to fit the
 * model input with its aspect ratio kept, then centred and padded.
 */
export interface Letterbox {
  /** Original (upright) image size. */
  width: number;
  height: number;
  /** Size of the scaled image inside the model input. */
  scaledWidth: number;
  scaledHeight: number;
  padLeft: number;
  padTop: number;
  inputWidth: number;
  inputHeight: number;
}

export const LETTERBOX_PAD_VALUE = 114;

export function letterboxGeometry(width: number, height: number, inputWidth: number, inputHeight: number): Letterbox {
  const scale = Math.min(inputWidth / width, inputHeight / height);
  const scaledWidth = Math.min(inputWidth, Math.max(1, Math.round(width * scale)));
  const scaledHeight = Math.min(inputHeight, Math.max(1, Math.round(height * scale)));
  return {
    width,
    height,
    scaledWidth,
    scaledHeight,
    padLeft: Math.floor((inputWidth - scaledWidth) / 2),
    padTop: Math.floor((inputHeight - scaledHeight) / 2),
    inputWidth,
    inputHeight,
  };
}

// One box shape from the model's output to the answer (src/protocol/results.ts).
export type { Box };

const clamp = (v: number, max: number) => Math.min(Math.max(v, 0), max);

/** Maps a box from model-input pixels back to original image pixels, clipped to the image. */
export function unletterboxBox(box: Box, lb: Letterbox): Box {
  // Per-axis factors are exact for the rounded scaled size, unlike one shared scale.
  const sx = lb.scaledWidth / lb.width;
  const sy = lb.scaledHeight / lb.height;
  return {
    x1: clamp((box.x1 - lb.padLeft) / sx, lb.width),
    y1: clamp((box.y1 - lb.padTop) / sy, lb.height),
    x2: clamp((box.x2 - lb.padLeft) / sx, lb.width),
    y2: clamp((box.y2 - lb.padTop) / sy, lb.height),
  };
}
