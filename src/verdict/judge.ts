/**
 * The verdict of one result on one camera of one line: the model's rules with the
 * line's and camera's changes from `verdict_rules_file`, evaluated on its
 * detections. What is in force is worked out once per model.json read, settings
 * read, line and camera, and kept while both serve.
 */
import type { Detection } from '../protocol/results.js';
import { evaluateVerdict, rulesInForce, type ModelVerdict, type RulesInForce, type VerdictOutcome } from './evaluate.js';
import { scopeOf, verdictSettings, type Scope, type VerdictSettings } from './settings.js';

/** What judging needs of a model: its name and its model.json's labels and verdict. */
export interface JudgedModel {
  name: string;
  manifest: { labels: readonly string[]; verdict: ModelVerdict };
}

/** Where the image came from, and the settings file (the config's `verdict_rules_file`; '' for none). */
export interface JudgedAt {
  file: string | undefined;
  line: string;
  camera: string;
}

export interface InForceAt {
  scope: Scope;
  inForce: RulesInForce;
}

/** Places (model, line, camera) kept per settings and model.json before the cache starts afresh. */
const MAX_PLACES = 4096;

/** Keyed by the settings and the model.json's verdict object: a file or model.json read again starts afresh. */
const cache = new WeakMap<VerdictSettings, WeakMap<ModelVerdict, Map<string, InForceAt>>>();

/** The rules in force for this model on this camera of this line, with its scale and polygons. */
export function inForceAt(model: JudgedModel, at: JudgedAt): InForceAt {
  const { verdict, labels } = model.manifest;
  const settings = verdictSettings(at.file);
  let byVerdict = cache.get(settings);
  if (!byVerdict) cache.set(settings, (byVerdict = new WeakMap()));
  let byPlace = byVerdict.get(verdict);
  if (!byPlace) byVerdict.set(verdict, (byPlace = new Map()));
  const key = `${model.name}\0${at.line}\0${at.camera}`;
  let found = byPlace.get(key);
  if (!found) {
    // Line and camera names come from clients: the cache must not grow with every new one.
    if (byPlace.size >= MAX_PLACES) byPlace.clear();
    const scope = scopeOf(settings, model.name, at.line, at.camera);
    found = { scope, inForce: rulesInForce(verdict, labels, scope) };
    byPlace.set(key, found);
  }
  return found;
}

/** The verdict of the detections under the rules in force where the image came from. */
export function judge(model: JudgedModel, detections: readonly Detection[], at: JudgedAt): VerdictOutcome {
  const { scope, inForce } = inForceAt(model, at);
  return evaluateVerdict(inForce, detections, scope);
}
