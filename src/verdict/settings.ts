/**
 * `verdict_rules_file`: per line and per camera, the scale (`mm_per_px`), named
 * polygons in the original image's pixels, and changes to the models' verdict
 * rules (docs/models.md#verdict-rules). Read and checked at start (runtime.ts), so
 * that a bad file stops the process with the reason; later changes are read while
 * serving, and a bad change leaves the settings before it in force.
 */
import { readFileSync, statSync } from 'node:fs';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { CAMERA_PATTERN, LINE_PATTERN } from '../protocol/options.js';
import { RULE_NAME_PATTERN, RulePatchSchema, hasSizeBound, regionsOf, type RulePatch } from './rules.js';

/** A closed polygon, [[x, y], …] in the original image's pixels; at least three corners. */
const PolygonSchema = Type.Array(Type.Tuple([Type.Number(), Type.Number()]), { minItems: 3 });
export type Polygon = Static<typeof PolygonSchema>;

/** Per model name, per rule name: `false` turns the rule off; an object changes (or, with a `label`, adds) it. */
const ModelOverridesSchema = Type.Record(Type.String(), Type.Record(Type.String(), Type.Union([Type.Literal(false), RulePatchSchema])));
export type ModelOverrides = Static<typeof ModelOverridesSchema>;

const SCOPE_FIELDS = {
  /** Millimetres per pixel of the original image: what rules in `mm` need. */
  mm_per_px: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
  /** Named polygons for the rules' `region`. */
  regions: Type.Optional(Type.Record(Type.String(), PolygonSchema)),
  /** Rule changes per model name. */
  models: Type.Optional(ModelOverridesSchema),
};

const CameraSettingsSchema = Type.Object(SCOPE_FIELDS, { additionalProperties: false });
export type CameraSettings = Static<typeof CameraSettingsSchema>;

const LineSettingsSchema = Type.Object(
  { ...SCOPE_FIELDS, cameras: Type.Optional(Type.Record(Type.String(), CameraSettingsSchema)) },
  { additionalProperties: false },
);
export type LineSettings = Static<typeof LineSettingsSchema>;

export const VerdictSettingsSchema = Type.Object({ lines: Type.Record(Type.String(), LineSettingsSchema) }, { additionalProperties: false });
export type VerdictSettings = Static<typeof VerdictSettingsSchema>;

/** What a camera's images are judged with: its scale and polygons (the camera's own, else its line's) and the rule changes, line first, then camera. */
export interface Scope {
  mm_per_px?: number;
  regions: Record<string, Polygon>;
  /** Per model: the line's changes, then the camera's (later wins). */
  overrides: { origin: 'line' | 'camera'; rules: Record<string, false | RulePatch> }[];
}

const EMPTY: VerdictSettings = { lines: {} };
const NAME = new RegExp(RULE_NAME_PATTERN);

/** Checks the parts of one line or camera the schema cannot: names, regions that rules refer to, a scale for rules in mm. */
function checkScope(where: string, scope: CameraSettings, inherited: Pick<CameraSettings, 'mm_per_px' | 'regions'>): void {
  const regions = { ...inherited.regions, ...scope.regions };
  for (const name of Object.keys(scope.regions ?? {})) {
    if (!NAME.test(name)) throw new Error(`${where}.regions: name "${name}" must match ${RULE_NAME_PATTERN}`);
  }
  const scale = scope.mm_per_px ?? inherited.mm_per_px;
  for (const [model, rules] of Object.entries(scope.models ?? {})) {
    for (const [rule, patch] of Object.entries(rules)) {
      const at = `${where}.models.${model}.${rule}`;
      if (!NAME.test(rule)) throw new Error(`${at}: rule name must match ${RULE_NAME_PATTERN}`);
      if (patch === false) continue;
      for (const region of regionsOf(patch)) {
        if (!regions[region]) {
          const known = Object.keys(regions);
          throw new Error(`${at}: region "${region}" is not defined here (regions: ${known.length ? known.join(', ') : 'none'})`);
        }
      }
      if (patch.unit === 'mm' && hasSizeBound(patch) && scale === undefined) {
        throw new Error(`${at}: unit "mm" needs mm_per_px, which ${where} does not set`);
      }
    }
  }
}

/** Checks a parsed file; throws an Error naming the first bad place (`lines.line-1.cameras.cam-2.…`). */
export function parseVerdictSettings(raw: unknown): VerdictSettings {
  const error = Value.Errors(VerdictSettingsSchema, raw).First();
  if (error) throw new Error(`${error.path || '(root)'} ${error.message}`);
  const settings = raw as VerdictSettings;
  for (const [line, lineSettings] of Object.entries(settings.lines)) {
    const where = `lines.${line}`;
    if (!new RegExp(LINE_PATTERN).test(line)) throw new Error(`${where}: line name must match ${LINE_PATTERN}`);
    checkScope(where, lineSettings, {});
    for (const [camera, cameraSettings] of Object.entries(lineSettings.cameras ?? {})) {
      if (!new RegExp(CAMERA_PATTERN).test(camera)) throw new Error(`${where}.cameras.${camera}: camera name must match ${CAMERA_PATTERN}`);
      checkScope(`${where}.cameras.${camera}`, cameraSettings, lineSettings);
    }
  }
  return settings;
}

/** A file in use: what serves, the size and mtime it was read at, and why the last change was refused. */
interface Loaded {
  settings: VerdictSettings;
  stamp: string;
  checkedAt: number;
  error: string | undefined;
}
const cache = new Map<string, Loaded>();

/** How often a file in use is looked at for changes (one stat). */
export const RECHECK_MS = 1000;

function stampOf(path: string): string {
  try {
    const stat = statSync(path);
    return `${stat.size}:${stat.mtimeMs}`;
  } catch {
    return '-';
  }
}

/** Reads and checks the file; throws `verdict_rules_file <path>: <reason>`. */
function readSettings(path: string): VerdictSettings {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`verdict_rules_file ${path}: ${(err as Error).message}`);
  }
  try {
    return parseVerdictSettings(raw);
  } catch (err) {
    throw new Error(`verdict_rules_file ${path}: ${(err as Error).message}`);
  }
}

/**
 * The settings of the file at `path` ('' → none). The first call reads and checks it
 * and throws `verdict_rules_file <path>: <reason>` (at start: runtime.ts); later
 * calls answer what serves now (see recheckVerdictSettings).
 */
export function verdictSettings(path: string | undefined): VerdictSettings {
  if (!path) return EMPTY;
  let loaded = cache.get(path);
  if (!loaded) {
    const stamp = stampOf(path);
    loaded = { settings: readSettings(path), stamp, checkedAt: Date.now(), error: undefined };
    cache.set(path, loaded);
  }
  return loaded.settings;
}

/**
 * Hot reload: at most every RECHECK_MS, reads the file again when its size or mtime
 * changed. A valid file serves from then on; a bad one (or a missing one) is refused
 * and the settings read before keep serving. Says what happened, for the caller's log.
 */
export function recheckVerdictSettings(path: string | undefined, now = Date.now()): { reloaded: true } | { rejected: string } | undefined {
  const loaded = path ? cache.get(path) : undefined;
  if (!path || !loaded || now - loaded.checkedAt < RECHECK_MS) return undefined;
  loaded.checkedAt = now;
  const stamp = stampOf(path);
  if (stamp === loaded.stamp) return undefined;
  loaded.stamp = stamp;
  try {
    loaded.settings = readSettings(path);
    loaded.error = undefined;
    return { reloaded: true };
  } catch (err) {
    loaded.error = (err as Error).message;
    return { rejected: loaded.error };
  }
}

/** Why the file's last change was refused (the settings before it still serve), or undefined. */
export function verdictSettingsError(path: string | undefined): string | undefined {
  return path ? cache.get(path)?.error : undefined;
}

/** The scope of one camera of one line for one model. */
export function scopeOf(settings: VerdictSettings, model: string, line: string, camera: string): Scope {
  const lineSettings = settings.lines[line];
  const cameraSettings = lineSettings?.cameras?.[camera];
  const overrides: Scope['overrides'] = [];
  const lineRules = lineSettings?.models?.[model];
  if (lineRules) overrides.push({ origin: 'line', rules: lineRules });
  const cameraRules = cameraSettings?.models?.[model];
  if (cameraRules) overrides.push({ origin: 'camera', rules: cameraRules });
  const mm = cameraSettings?.mm_per_px ?? lineSettings?.mm_per_px;
  return {
    ...(mm !== undefined ? { mm_per_px: mm } : {}),
    regions: { ...lineSettings?.regions, ...cameraSettings?.regions },
    overrides,
  };
}
