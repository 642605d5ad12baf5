import { readFileSync } from 'node:fs';
import { Errors } from '../errors.js';
import { DEFAULT_LINE, LINE_PATTERN, MODEL_REF_PATTERN } from '../protocol/options.js';

const LINE_REGEX = new RegExp(LINE_PATTERN);
const MODEL_REGEX = new RegExp(MODEL_REF_PATTERN);

/** The kinds of pulled source this build reads (docs/sources.md). */
export const SOURCE_KINDS = ['folder', 'snapshot', 'mjpeg', 'ffmpeg'] as const;
export type SourceKind = (typeof SOURCE_KINDS)[number];

/** A source's name: what its metrics, /readyz check and API path carry. */
export const SOURCE_NAME_REGEX = LINE_REGEX;

/** One pulled source as configured (config file, `sources` key, or POST /v1/sources). */
export interface SourceSpec {
  name: string;
  kind: SourceKind;
  /** folder: the directory watched; snapshot: the http(s) URL polled; mjpeg: the http(s) stream URL; ffmpeg: any URL or file ffmpeg reads. */
  target: string;
  /** The line and camera its frames count under in the line registry; default: line `default`, camera = name. */
  line: string;
  camera: string;
  /** `name` or `name:version`; left out: the default model. */
  model?: string;
  /** snapshot: time between two fetches; folder: the poll (and stability) interval; mjpeg: least time between two frames taken (0: every frame); ffmpeg: the frame period (1000 / fps). 0: the config default. */
  interval_ms: number;
  /** Created paused (nothing is read until resumed). */
  paused: boolean;
}

/** Input as given; everything but name, kind and target has a default. */
export type SourceInput = Partial<SourceSpec> & Pick<SourceSpec, 'name' | 'kind' | 'target'>;

export const MIN_INTERVAL_MS = 50;
export const MAX_INTERVAL_MS = 3_600_000;

/**
 * The text with the password of every URL in it (`rtsp://user:secret@cam/…`) replaced by
 * `***`: a camera's credentials stay out of the sources API (viewer role), the down
 * reasons, logs and events, which repeat the target and ffmpeg's messages about it.
 */
export function redactCredentials(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/[^\s:/?#@]*):[^\s/?#@]*@/gi, '$1:***@');
}

/** Checks and completes one source; throws INVALID_SOURCE with what is wrong. */
export function sourceSpec(input: SourceInput): SourceSpec {
  const bad = (why: string) => new Errors.INVALID_SOURCE(`${JSON.stringify(input.name)}: ${why}`);
  if (typeof input.name !== 'string' || !SOURCE_NAME_REGEX.test(input.name)) throw bad('a name is 1–64 of A–Z a–z 0–9 . _ - (not starting with . _ -)');
  if (!SOURCE_KINDS.includes(input.kind)) throw bad(`kind must be one of ${SOURCE_KINDS.join(', ')}`);
  if (typeof input.target !== 'string' || input.target.trim() === '') throw bad('a target (folder path or URL) is needed');
  const target = input.target.trim();
  if (input.kind === 'snapshot' || input.kind === 'mjpeg') {
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      throw bad(`${target} is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad(`a ${input.kind} URL is http:// or https://`);
  }
  const line = input.line ?? DEFAULT_LINE;
  const camera = input.camera ?? input.name;
  if (!LINE_REGEX.test(line)) throw bad(`line ${JSON.stringify(line)} is not a line name`);
  if (!LINE_REGEX.test(camera)) throw bad(`camera ${JSON.stringify(camera)} is not a camera name`);
  const interval = input.interval_ms ?? 0;
  if (!Number.isInteger(interval) || (interval !== 0 && (interval < MIN_INTERVAL_MS || interval > MAX_INTERVAL_MS))) {
    throw bad(`interval_ms is 0 (the default) or an integer from ${MIN_INTERVAL_MS} to ${MAX_INTERVAL_MS}`);
  }
  if (input.model !== undefined && (typeof input.model !== 'string' || !MODEL_REGEX.test(input.model))) throw bad('model is `name` or `name:version`');
  return {
    name: input.name,
    kind: input.kind,
    target,
    line,
    camera,
    ...(input.model !== undefined ? { model: input.model } : {}),
    interval_ms: interval,
    paused: input.paused === true,
  };
}

const OPTION_KEYS = new Set(['line', 'camera', 'model', 'interval_ms', 'paused']);

/**
 * Config values are flat scalars, so the `sources` key holds either the path of a
 * JSON file (an array of source objects) or a compact string:
 * `name=kind:target[,key=value…]` entries separated by `;`, e.g.
 * `cam-1=folder:/srv/in/cam-1,line=line-1; top=snapshot:http://10.0.0.7/snap.jpg,interval_ms=500`.
 * (A `;` inside a target is not possible here: such a source belongs in the JSON file.)
 * Options split only at a comma followed by `key=`, so commas inside a URL survive.
 */
export function parseSources(value: string, readFile: (path: string) => string = (p) => readFileSync(p, 'utf8')): SourceSpec[] {
  const text = value.trim();
  if (text === '') return [];
  let specs: SourceSpec[];
  if (text.endsWith('.json') && !text.includes('=')) {
    let raw: unknown;
    try {
      raw = JSON.parse(readFile(text));
    } catch (err) {
      throw new Errors.INVALID_SOURCE(`sources file ${text}: ${(err as Error).message}`);
    }
    if (!Array.isArray(raw)) throw new Errors.INVALID_SOURCE(`sources file ${text}: an array of sources is expected`);
    specs = raw.map((s) => sourceSpec(s as SourceInput));
  } else {
    specs = text
      .split(';')
      .map((entry) => entry.trim())
      .filter((entry) => entry !== '')
      .map(compactEntry);
  }
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.name)) throw new Errors.INVALID_SOURCE(`${s.name} is named twice`);
    seen.add(s.name);
  }
  return specs;
}

function compactEntry(entry: string): SourceSpec {
  const m = /^([^=\s]+)\s*=\s*([a-z]+):(.*)$/s.exec(entry);
  if (!m) throw new Errors.INVALID_SOURCE(`${JSON.stringify(entry)}: expected name=kind:target[,key=value…]`);
  const [, name, kind, rest] = m as unknown as [string, string, string, string];
  const [target = '', ...options] = rest.split(/,(?=\s*[a-z_]+\s*=)/);
  const input: Record<string, unknown> = { name, kind, target };
  for (const option of options) {
    const eq = option.indexOf('=');
    const key = option.slice(0, eq).trim();
    const raw = option.slice(eq + 1).trim();
    if (!OPTION_KEYS.has(key)) throw new Errors.INVALID_SOURCE(`${name}: unknown option ${key} (${[...OPTION_KEYS].join(', ')})`);
    input[key] = key === 'interval_ms' ? Number(raw) : key === 'paused' ? raw === 'true' : raw;
  }
  return sourceSpec(input as unknown as SourceInput);
}
