import { performance } from 'node:perf_hooks';
import { QUALITY_MEASURES, parseQualityOverrides, type QualityEnvelope, type QualityMeasure, type QualityOverride } from '../config/quality-overrides.js';
import type { ImageQuality, Verdict } from '../protocol/results.js';
import type { Letterbox } from './letterbox.js';

export { QUALITY_MEASURES, type QualityEnvelope, type QualityMeasure } from '../config/quality-overrides.js';

/** The measures of one image: what ImageQuality reports, without the reasons. */
export type QualityMeasures = Omit<ImageQuality, 'reasons'>;

/** Grey levels at or below / at or above which a pixel counts as clipped (sensor floor and saturation, after JPEG). */
export const DARK_LEVEL = 5;
export const BRIGHT_LEVEL = 250;

export interface Region {
  left: number;
  top: number;
  width: number;
  height: number;
}

/**
 * Sharpness (variance of the 4-neighbour Laplacian), exposure (mean grey level,
 * share of clipped dark and bright pixels) and contrast (standard deviation of
 * the grey level) of `region` of an RGB HWC uint8 image `stride` pixels wide.
 * Grey is BT.601 luma in integers (77 R + 150 G + 29 B) >> 8.
 * One pass to grey, one for the Laplacian: about a millisecond for a 416 × 416
 * model input on one core (docs/models.md#image-quality-gate), cheap next to the
 * inference, so every image can be measured on the main thread.
 */
export function measureQuality(pixels: Uint8Array, stride: number, region: Region): QualityMeasures {
  const { left, top, width: w, height: h } = region;
  const n = w * h;
  if (n === 0) return { sharpness: 0, brightness: 0, contrast: 0, dark_fraction: 0, bright_fraction: 0 };
  const grey = new Uint8Array(n);
  let sum = 0;
  let sumSq = 0;
  let dark = 0;
  let bright = 0;
  for (let y = 0, i = 0; y < h; y++) {
    let p = ((top + y) * stride + left) * 3;
    for (let x = 0; x < w; x++, i++, p += 3) {
      const g = (77 * pixels[p]! + 150 * pixels[p + 1]! + 29 * pixels[p + 2]!) >> 8;
      grey[i] = g;
      sum += g;
      sumSq += g * g;
      if (g <= DARK_LEVEL) dark++;
      else if (g >= BRIGHT_LEVEL) bright++;
    }
  }
  const mean = sum / n;
  const variance = Math.max(0, sumSq / n - mean * mean);
  // The Laplacian over the interior: the region's border pixels lack a neighbour,
  // and the letterbox padding around it must not count as an edge.
  let lSum = 0;
  let lSumSq = 0;
  let lCount = 0;
  for (let y = 1; y < h - 1 && w >= 3; y++) {
    const row = y * w;
    for (let x = 1; x < w - 1; x++) {
      const c = row + x;
      const l = grey[c - 1]! + grey[c + 1]! + grey[c - w]! + grey[c + w]! - 4 * grey[c]!;
      lSum += l;
      lSumSq += l * l;
    }
    lCount += w - 2;
  }
  const lMean = lCount ? lSum / lCount : 0;
  const sharpness = lCount ? Math.max(0, lSumSq / lCount - lMean * lMean) : 0;
  return {
    sharpness: round(sharpness, 1),
    brightness: round(mean, 1),
    contrast: round(Math.sqrt(variance), 1),
    dark_fraction: round(dark / n, 4),
    bright_fraction: round(bright / n, 4),
  };
}

/**
 * The measures of a letterboxed model input, over the image only (not its
 * padding): what the model sees, so that the envelope, measured the same way on
 * the training images, holds whatever the size of the original.
 */
export function measureLetterboxed(pixels: Uint8Array, lb: Letterbox): QualityMeasures {
  return measureQuality(pixels, lb.inputWidth, { left: lb.padLeft, top: lb.padTop, width: lb.scaledWidth, height: lb.scaledHeight });
}

/** What leaving each bound means, for the reasons: `blurred: sharpness 12 < 40`. */
const WORDS: Record<QualityMeasure, { min: string; max: string }> = {
  sharpness: { min: 'blurred', max: 'noisy' },
  brightness: { min: 'underexposed', max: 'overexposed' },
  contrast: { min: 'low contrast', max: 'high contrast' },
  dark_fraction: { min: 'too few dark pixels', max: 'clipped dark' },
  bright_fraction: { min: 'too few bright pixels', max: 'clipped bright' },
};

/** Why the measures lie outside the envelope, one reason per bound crossed; empty inside it. */
export function qualityReasons(measures: QualityMeasures, envelope: QualityEnvelope): string[] {
  const reasons: string[] = [];
  for (const measure of QUALITY_MEASURES) {
    const bounds = envelope[measure];
    if (!bounds) continue;
    const v = measures[measure];
    if (bounds.min !== undefined && v < bounds.min) reasons.push(`${WORDS[measure].min}: ${measure} ${v} < ${bounds.min}`);
    if (bounds.max !== undefined && v > bounds.max) reasons.push(`${WORDS[measure].max}: ${measure} ${v} > ${bounds.max}`);
  }
  return reasons;
}

/**
 * The envelope a line's images are held to: the model's, with the line's
 * override bound by bound, or none (no measuring at all) when the model has no
 * `quality` block or the line's override is `off`.
 */
export function effectiveEnvelope(model: QualityEnvelope | undefined, override: QualityOverride | undefined): QualityEnvelope | undefined {
  if (override === 'off') return undefined;
  if (!override) return model && Object.keys(model).length ? model : undefined;
  const merged: QualityEnvelope = { ...model };
  for (const measure of QUALITY_MEASURES) {
    if (override[measure]) merged[measure] = { ...merged[measure], ...override[measure] };
  }
  return merged;
}

/**
 * The verdict after the quality gate: an image outside the envelope is `check`,
 * whatever the model saw. The model was not shown such images, so neither "no
 * defect" nor "defects" can be trusted: the built-in model finds up to 18
 * `crack`s at 0.80 in pure noise (test/quality.test.ts), which `ng` would send to
 * scrap. `check` is never a pass either (PLC code 3, not 1): a person or a new
 * picture decides, and the detections stay in the result for them.
 */
export function gatedVerdict(verdict: Verdict, reasons: readonly string[]): Verdict {
  return reasons.length > 0 ? 'check' : verdict;
}

/** The overrides of one config value, parsed once (the config does not change while serving). */
const parsed = new Map<string, Map<string, QualityOverride>>();
export function lineOverride(text: string | undefined, line: string): QualityOverride | undefined {
  if (!text) return undefined;
  let map = parsed.get(text);
  if (!map) parsed.set(text, (map = parseQualityOverrides(text)));
  return map.get(line);
}

/** Measures with the time it took, for the bench and the envelope script. */
export function timedMeasure(pixels: Uint8Array, lb: Letterbox): { measures: QualityMeasures; ms: number } {
  const t0 = performance.now();
  const measures = measureLetterboxed(pixels, lb);
  return { measures, ms: performance.now() - t0 };
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
