/**
 * Verdict rules (docs/models.md#verdict-rules): the `verdict.rules` of model.json
 * and the per-line overrides of `verdict_rules_file` share these shapes. A rule
 * makes a result NG when at least `min_count` of its detections match: one of its
 * labels, a score ≥ `min_score`, every size bound met (in pixels or millimetres),
 * and the box centre inside its include regions and outside its exclude regions.
 * Schemas carry no defaults: a line's patch must change only what it names.
 */
import { Type, type Static, type TProperties } from '@sinclair/typebox';

/** Rule, region and polygon names: what lines and models allow. */
export const RULE_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
const RULE_NAME = new RegExp(RULE_NAME_PATTERN);

export const SIZE_UNITS = ['px', 'mm'] as const;
export type SizeUnit = (typeof SIZE_UNITS)[number];

/** The size bounds of a rule: box length (longer side) and width (shorter side), area (mask area when the model gives one, else the box's). */
export const SIZE_BOUNDS = ['min_length', 'max_length', 'min_width', 'max_width', 'min_area', 'max_area'] as const;
export type SizeBound = (typeof SIZE_BOUNDS)[number];

const RegionRefSchema = Type.Object(
  {
    /** The detection counts only when its box centre lies in one of these polygons. */
    include: Type.Optional(Type.Array(Type.String({ pattern: RULE_NAME_PATTERN }), { minItems: 1 })),
    /** The detection is ignored when its box centre lies in one of these polygons. */
    exclude: Type.Optional(Type.Array(Type.String({ pattern: RULE_NAME_PATTERN }), { minItems: 1 })),
  },
  { additionalProperties: false },
);

const size = () => Type.Optional(Type.Number({ minimum: 0 }));

/** Everything of a rule but its name and label, all optional. */
const RULE_FIELDS = {
  description: Type.Optional(Type.String()),
  /** Least score of a detection that counts; default 0 (every detection the model reports, i.e. at or above its `conf`). */
  min_score: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  /** Unit of the size bounds: `px` (default) or `mm`, which needs the camera's `mm_per_px`. Areas are in px² or mm². */
  unit: Type.Optional(Type.Union(SIZE_UNITS.map((u) => Type.Literal(u)))),
  min_length: size(),
  max_length: size(),
  min_width: size(),
  max_width: size(),
  min_area: size(),
  max_area: size(),
  /** NG when at least this many detections match; default 1. "More than 3 stains" is 4. */
  min_count: Type.Optional(Type.Integer({ minimum: 1 })),
  /** Polygons of the camera (verdict_rules_file) by name. */
  region: Type.Optional(RegionRefSchema),
} satisfies TProperties;

const LabelSchema = Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })]);

/** One rule of `verdict.rules` in model.json. */
export const VerdictRuleSchema = Type.Object(
  { name: Type.String({ pattern: RULE_NAME_PATTERN }), label: LabelSchema, ...RULE_FIELDS },
  { additionalProperties: false },
);
export type VerdictRule = Static<typeof VerdictRuleSchema>;

/** A line's change to a rule: the fields it names replace the model's; with a `label` it may also add a rule the model lacks. */
export const RulePatchSchema = Type.Object({ label: Type.Optional(LabelSchema), ...RULE_FIELDS }, { additionalProperties: false });
export type RulePatch = Static<typeof RulePatchSchema>;

/** The labels a rule counts. */
export const labelsOf = (rule: Pick<VerdictRule, 'label'>): string[] => (typeof rule.label === 'string' ? [rule.label] : rule.label);

/** The region names a rule refers to. */
export const regionsOf = (rule: Pick<VerdictRule, 'region'>): string[] => [...(rule.region?.include ?? []), ...(rule.region?.exclude ?? [])];

/** Whether the rule has a size bound (and so, in mm, needs a scale). */
export const hasSizeBound = (rule: Partial<Record<SizeBound, number | undefined>>): boolean => SIZE_BOUNDS.some((b) => rule[b] !== undefined);

/**
 * What the schema cannot say about one rule, as a message naming it, or undefined:
 * a label the model lacks, a lower bound above its upper bound.
 */
export function ruleProblem(rule: VerdictRule, labels: readonly string[]): string | undefined {
  for (const label of labelsOf(rule)) {
    if (!labels.includes(label)) return `label "${label}" is not among the model's labels (${labels.join(', ')})`;
  }
  for (const what of ['length', 'width', 'area'] as const) {
    const min = rule[`min_${what}`];
    const max = rule[`max_${what}`];
    if (min !== undefined && max !== undefined && min > max) return `min_${what} ${min} > max_${what} ${max}: no detection can match`;
  }
  return undefined;
}

/**
 * Checks `verdict.rules` of a model.json already checked against the schema;
 * throws an Error naming the rule (index and name) and the field.
 */
export function checkRules(rules: readonly VerdictRule[], labels: readonly string[]): void {
  const seen = new Map<string, number>();
  for (const [i, rule] of rules.entries()) {
    const where = `verdict.rules[${i}] ("${rule.name}")`;
    if (!RULE_NAME.test(rule.name)) throw new Error(`${where}: name must match ${RULE_NAME_PATTERN}`);
    const first = seen.get(rule.name);
    if (first !== undefined) throw new Error(`${where}: name "${rule.name}" is used by verdict.rules[${first}] too; names must be unique`);
    seen.set(rule.name, i);
    const problem = ruleProblem(rule, labels);
    if (problem) throw new Error(`${where}: ${problem}`);
  }
}
