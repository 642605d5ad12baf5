/**
 * `quality_overrides`: per-line changes to a model's image-quality envelope
 * (`quality` in model.json, docs/models.md#image-quality-gate). A line whose
 * camera is known to differ (a darker station, a lens that is softer by design)
 * gets its own bounds without a new model version:
 * `line-1=sharpness_min:20,brightness_max:230; line-4=off`.
 * Lives in config/ (which imports nothing else) so that the schema's pattern and
 * this parser share one list of measures; inference/quality.ts applies the result.
 */

/** The measures of an image's quality, in the order they are reported. */
export const QUALITY_MEASURES = ['sharpness', 'brightness', 'contrast', 'dark_fraction', 'bright_fraction'] as const;
export type QualityMeasure = (typeof QUALITY_MEASURES)[number];

/** Bounds of one measure; a bound left out is not checked. */
export interface QualityBounds {
  min?: number;
  max?: number;
}
export type QualityEnvelope = Partial<Record<QualityMeasure, QualityBounds>>;

/** One line's override: `off` (no gate on that line) or bounds that replace the model's, bound by bound. */
export type QualityOverride = 'off' | QualityEnvelope;

const NUMBER = '[0-9]+(\\.[0-9]+)?';
const BOUND = `(${QUALITY_MEASURES.join('|')})_(min|max)\\s*:\\s*${NUMBER}`;
const ENTRY = `[A-Za-z0-9][A-Za-z0-9._-]{0,63}\\s*=\\s*(off|${BOUND}(\\s*,\\s*${BOUND})*)`;
/** The schema's pattern for `quality_overrides`: a bad value fails at start, with the key named. */
export const QUALITY_OVERRIDES_PATTERN = `^\\s*(${ENTRY}(\\s*;\\s*${ENTRY})*\\s*;?)?\\s*$`;

/** Parses `quality_overrides` (already checked by QUALITY_OVERRIDES_PATTERN); throws with the reason on what it cannot read. */
export function parseQualityOverrides(text: string): Map<string, QualityOverride> {
  const out = new Map<string, QualityOverride>();
  for (const part of text.split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0) throw new Error(`quality_overrides: "${part.trim()}" is not line=bounds`);
    const line = part.slice(0, eq).trim();
    const spec = part.slice(eq + 1).trim();
    if (spec === 'off') {
      out.set(line, 'off');
      continue;
    }
    const envelope: QualityEnvelope = {};
    for (const item of spec.split(',')) {
      const m = /^\s*([a-z_]+)_(min|max)\s*:\s*([0-9.]+)\s*$/.exec(item);
      const measure = m?.[1] as QualityMeasure | undefined;
      const value = Number(m?.[3]);
      if (!m || !measure || !QUALITY_MEASURES.includes(measure) || !Number.isFinite(value)) {
        throw new Error(`quality_overrides: "${item.trim()}" is not <measure>_min:<n> or <measure>_max:<n> (measures: ${QUALITY_MEASURES.join(', ')})`);
      }
      envelope[measure] = { ...envelope[measure], [m[2] as 'min' | 'max']: value };
    }
    out.set(line, envelope);
  }
  return out;
}
