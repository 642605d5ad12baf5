/**
 * The verdict of one result from its detections (docs/models.md#verdict-rules):
 * pure functions, no I/O. `rulesInForce` merges a model's rules with a line's and a
 * camera's changes; `evaluateVerdict` applies them. NG wins: a result is `ng` when
 * any rule fires, else `check` when a rule that could have fired cannot be evaluated
 * (a rule in mm on a camera without `mm_per_px`, a region the camera does not
 * define, a line's change that does not make a valid rule), else `ok`.
 */
import type { Detection, Verdict, VerdictReason } from '../protocol/results.js';
import { SIZE_BOUNDS, hasSizeBound, labelsOf, regionsOf, ruleProblem, type VerdictRule } from './rules.js';
import type { Polygon, Scope } from './settings.js';

/** `verdict` of model.json: the label-and-score rule `ng` and the rules. */
export interface ModelVerdict {
  ng: Record<string, number>;
  rules?: VerdictRule[];
}

/** A rule as it applies on one camera, and where its last change came from. */
export type RuleInForce = VerdictRule & { origin: 'model' | 'line' | 'camera' };

export interface RulesInForce {
  /** The label-and-score rule, as in model.json (lines do not change it). */
  ng: Record<string, number>;
  rules: RuleInForce[];
  /** Rules of the model a line or camera turned off. */
  disabled: string[];
  /** Changes that do not make a valid rule: every result is `check` until the file is fixed. */
  problems: { rule: string; detail: string }[];
}

/** The model's rules with the scope's changes applied, line first, then camera. */
export function rulesInForce(verdict: ModelVerdict, labels: readonly string[], scope: Pick<Scope, 'overrides'>): RulesInForce {
  const rules = new Map<string, RuleInForce>((verdict.rules ?? []).map((r) => [r.name, { ...r, origin: 'model' as const }]));
  const disabled = new Set<string>();
  const problems: RulesInForce['problems'] = [];
  for (const { origin, rules: changes } of scope.overrides) {
    for (const [name, patch] of Object.entries(changes)) {
      const base = rules.get(name);
      if (patch === false) {
        if (base) disabled.add(name);
        rules.delete(name);
        continue;
      }
      if (base) {
        rules.set(name, { ...base, ...patch, name, origin });
      } else if (patch.label !== undefined) {
        disabled.delete(name);
        rules.set(name, { ...patch, name, label: patch.label, origin });
      } else {
        problems.push({ rule: name, detail: `the ${origin}'s change names a rule the model does not have, and no label to make it a new rule` });
      }
    }
  }
  for (const [name, rule] of rules) {
    const problem = ruleProblem(rule, labels);
    if (problem) {
      problems.push({ rule: name, detail: `the ${rule.origin}'s change makes an invalid rule: ${problem}` });
      rules.delete(name);
    }
  }
  return { ng: verdict.ng, rules: [...rules.values()], disabled: [...disabled], problems };
}

/** Whether the point lies inside the polygon (even-odd rule; a point on an edge may fall either way). */
export function insidePolygon(x: number, y: number, polygon: Polygon): boolean {
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i]!;
    const [xj, yj] = polygon[j]!;
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Box length (longer side), width (shorter side) and area (the mask's `area_px` when the model gives one, else the box's), in pixels. */
export function sizeOf(d: Detection): { length: number; width: number; area: number } {
  const w = d.box.x2 - d.box.x1;
  const h = d.box.y2 - d.box.y1;
  const mask = (d as { area_px?: unknown }).area_px;
  return { length: Math.max(w, h), width: Math.min(w, h), area: typeof mask === 'number' ? mask : w * h };
}

/** Bounds are inclusive; the slack keeps 40 px × 0.05 mm/px from missing a 2 mm bound by a rounding error. */
const EPSILON = 1e-9;
const round = (v: number) => Math.round(v * 1000) / 1000;

function sizeFits(rule: VerdictRule, d: Detection, mmPerPx: number): boolean {
  const s = sizeOf(d);
  const measured = { length: s.length * mmPerPx, width: s.width * mmPerPx, area: s.area * mmPerPx * mmPerPx };
  for (const bound of SIZE_BOUNDS) {
    const limit = rule[bound];
    if (limit === undefined) continue;
    const [kind, what] = bound.split('_') as ['min' | 'max', 'length' | 'width' | 'area'];
    if (kind === 'min' ? measured[what] + EPSILON < limit : measured[what] - EPSILON > limit) return false;
  }
  return true;
}

function regionFits(rule: VerdictRule, d: Detection, regions: Record<string, Polygon>): boolean {
  const x = (d.box.x1 + d.box.x2) / 2;
  const y = (d.box.y1 + d.box.y2) / 2;
  const { include, exclude } = rule.region ?? {};
  if (include && !include.some((name) => insidePolygon(x, y, regions[name]!))) return false;
  if (exclude?.some((name) => insidePolygon(x, y, regions[name]!))) return false;
  return true;
}

/** `1 scratch (score 0.91, length 2.5 mm, width 1 mm)`: the first detection that met the rule, measured in the rule's unit. */
function describe(rule: VerdictRule, matched: readonly Detection[], mmPerPx: number | undefined): string {
  const labels = labelsOf(rule).join('|');
  const unit = rule.unit === 'mm' && mmPerPx !== undefined ? 'mm' : 'px';
  const scale = unit === 'mm' ? mmPerPx! : 1;
  const first = matched[0]!;
  const s = sizeOf(first);
  const measures = [`score ${first.score}`];
  if (rule.min_length !== undefined || rule.max_length !== undefined) measures.push(`length ${round(s.length * scale)} ${unit}`);
  if (rule.min_width !== undefined || rule.max_width !== undefined) measures.push(`width ${round(s.width * scale)} ${unit}`);
  if (rule.min_area !== undefined || rule.max_area !== undefined) measures.push(`area ${round(s.area * scale * scale)} ${unit}²`);
  const bounds = SIZE_BOUNDS.filter((b) => rule[b] !== undefined).map((b) => `${b} ${rule[b]} ${unit}${b.endsWith('area') ? '²' : ''}`);
  if (rule.region?.include) bounds.push(`inside ${rule.region.include.join('|')}`);
  if (rule.region?.exclude) bounds.push(`outside ${rule.region.exclude.join('|')}`);
  const need = rule.min_count ?? 1;
  return `${matched.length} × ${labels} met ${bounds.length ? bounds.join(', ') : `min_score ${rule.min_score ?? 0}`} (min_count ${need}); first: ${first.label} ${measures.join(', ')}`;
}

export interface VerdictOutcome {
  /** `ok`, `ng` or `check` (a rule could not be evaluated); the image-quality gate may still turn `ok`/`ng` into `check`. */
  verdict: Verdict;
  /** The rules that fired or could not be evaluated, in the order of the rules. */
  reasons: VerdictReason[];
}

/** The verdict of `detections` (in original image pixels) under the rules in force on a camera with this scale and these polygons. */
export function evaluateVerdict(
  inForce: RulesInForce,
  detections: readonly Detection[],
  scope: Pick<Scope, 'mm_per_px' | 'regions'> = { regions: {} },
): VerdictOutcome {
  const reasons: VerdictReason[] = [];
  const ngHits = detections.flatMap((d, i) => (inForce.ng[d.label] !== undefined && d.score >= inForce.ng[d.label]! ? [i] : []));
  if (ngHits.length > 0) {
    const first = detections[ngHits[0]!]!;
    reasons.push({
      rule: 'verdict.ng',
      outcome: 'ng',
      count: ngHits.length,
      detections: ngHits,
      detail: `${ngHits.length} detection(s) at or above their verdict.ng score; first: ${first.label} ${first.score} ≥ ${inForce.ng[first.label]}`,
    });
  }
  for (const rule of inForce.rules) {
    const labels = labelsOf(rule);
    const minScore = rule.min_score ?? 0;
    const need = rule.min_count ?? 1;
    const candidates = detections.flatMap((d, i) => (labels.includes(d.label) && d.score >= minScore ? [i] : []));
    // Too few candidates: the rule cannot fire whatever the sizes and regions, so nothing it lacks matters.
    if (candidates.length < need) continue;
    const missing: string[] = [];
    if (rule.unit === 'mm' && hasSizeBound(rule) && scope.mm_per_px === undefined) missing.push('mm_per_px (the rule is in mm)');
    for (const region of regionsOf(rule)) if (!scope.regions[region]) missing.push(`region "${region}"`);
    if (missing.length > 0) {
      reasons.push({
        rule: rule.name,
        outcome: 'check',
        count: candidates.length,
        detections: candidates,
        detail: `cannot be evaluated: verdict_rules_file gives this line/camera no ${missing.join(', ')}`,
      });
      continue;
    }
    const mmPerPx = rule.unit === 'mm' ? scope.mm_per_px! : 1;
    const matched = candidates.filter((i) => sizeFits(rule, detections[i]!, mmPerPx) && regionFits(rule, detections[i]!, scope.regions));
    if (matched.length >= need) {
      reasons.push({
        rule: rule.name,
        outcome: 'ng',
        count: matched.length,
        detections: matched,
        detail: describe(
          rule,
          matched.map((i) => detections[i]!),
          scope.mm_per_px,
        ),
      });
    }
  }
  for (const { rule, detail } of inForce.problems) reasons.push({ rule, outcome: 'check', count: 0, detections: [], detail });
  const verdict: Verdict = reasons.some((r) => r.outcome === 'ng') ? 'ng' : reasons.length > 0 ? 'check' : 'ok';
  return { verdict, reasons };
}
