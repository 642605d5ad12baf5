/**
 * Turns a model given on the command line (a model-repository version directory,
 * a bare .onnx file or a shared fixture name) into a one-model repository the
 * server can serve, and probes it once for its input size, output shape and format.
 */
import { existsSync, statSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readModelManifest, type ModelManifest, type OutputFormat } from '../src/inference/model-manifest.js';
import { resolveFormat } from '../src/inference/postprocess/decoders.js';
import { OnnxRunner } from '../src/inference/onnx-runner.js';
import { LETTERBOX_PAD_VALUE } from '../src/inference/letterbox.js';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const FIXTURES_DIR = resolve(PROJECT_ROOT, '../shared/models');
export const BUILTIN_MODEL_DIR = resolve(PROJECT_ROOT, 'models/defects/1');

export interface ModelSpec {
  /** Name used in the repository, the report title and the result file names. */
  name: string;
  /** What the user gave (path or fixture name), for the report. */
  source: string;
}

export interface PreparedModel {
  name: string;
  version: string;
  source: string;
  /** A model repository holding exactly this model (a temporary one). */
  repoDir: string;
  modelPath: string;
  manifest: ModelManifest;
  /** True when the harness wrote model.json itself. */
  manifestGenerated: boolean;
  inputName: string;
  inputWidth: number;
  inputHeight: number;
  inputShape: (number | string)[];
  outputDims: number[];
  format: OutputFormat;
  /** The batch dimension when the model fixes it, else undefined (dynamic). */
  fixedBatch: number | undefined;
}

/** `--fixture yolov8n_shape_640` → the shared fixture path. */
export function fixturePath(name: string): string {
  const file = join(FIXTURES_DIR, name.endsWith('.onnx') ? name : `${name}.onnx`);
  if (!existsSync(file)) throw new Error(`fixture ${name} not found (looked for ${file})`);
  return file;
}

function defaultName(source: string): string {
  const path = resolve(source);
  if (path.endsWith('.onnx')) return basename(path, '.onnx');
  // models/<name>/<version>/ → <name>
  if (existsSync(join(path, 'model.onnx')) && existsSync(join(path, 'model.json'))) return basename(dirname(path));
  return basename(path);
}

export function specFor(source: string, name?: string): ModelSpec {
  return { name: (name ?? defaultName(source)).replace(/[^A-Za-z0-9._-]/g, '_'), source };
}

/** Class count implied by a raw detector output shape: [N, 4+C, A] (v8) or [N, A, 5+C] (v5). */
function labelsFromShape(dims: readonly number[]): number | undefined {
  if (dims.length !== 3) return undefined;
  const [, d1, d2] = dims as [number, number, number];
  if (d1 < d2 && d1 > 4) return d1 - 4;
  if (d2 < d1 && d2 > 5 && d2 !== 6) return d2 - 5;
  return undefined;
}

/**
 * Lays out `<tmp>/<name>/<version>/` for the model: a symlink to a version directory
 * that has model.json, or model.onnx (symlink) plus a generated model.json with
 * `labels` class labels (default: what the output shape implies, else 80; the format
 * is then detected from the output shape).
 */
export async function prepareModel(spec: ModelSpec, tmpRoot: string, labels: number | undefined): Promise<PreparedModel> {
  const source = resolve(spec.source);
  if (!existsSync(source)) throw new Error(`model ${spec.source} does not exist`);
  const repoDir = join(tmpRoot, 'repo');
  const modelDir = join(repoDir, spec.name);
  await mkdir(modelDir, { recursive: true });
  let versionDir: string;
  let version = '1';
  let manifestGenerated = false;
  const isDir = statSync(source).isDirectory();
  if (isDir && existsSync(join(source, 'model.json'))) {
    if (!existsSync(join(source, 'model.onnx'))) throw new Error(`${spec.source} has model.json but no model.onnx`);
    version = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(basename(source)) ? basename(source) : '1';
    versionDir = join(modelDir, version);
    await symlink(source, versionDir, 'dir');
  } else {
    const onnx = isDir ? join(source, 'model.onnx') : source;
    if (!existsSync(onnx)) throw new Error(`${spec.source}: no model.onnx`);
    versionDir = join(modelDir, version);
    await mkdir(versionDir);
    await symlink(onnx, join(versionDir, 'model.onnx'));
    const count = labels ?? labelsFromShape((await probe(onnx, undefined)).outputDims) ?? 80;
    await writeFile(join(versionDir, 'model.json'), JSON.stringify({ labels: Array.from({ length: count }, (_, i) => `class${i}`) }));
    manifestGenerated = true;
  }
  const modelPath = join(versionDir, 'model.onnx');
  const manifest = await readModelManifest(join(versionDir, 'model.json'));
  const probed = await probe(modelPath, manifest);
  const { format } = resolveFormat(manifest.format, probed.outputDims, manifest.labels.length);
  return { name: spec.name, version, source: spec.source, repoDir, modelPath, manifest, manifestGenerated, format, ...probed };
}

/** Loads the model once (one thread) for its input size and output shape. */
async function probe(modelPath: string, manifest: ModelManifest | undefined) {
  const runner = await OnnxRunner.create(modelPath, {
    intraOpThreads: 1,
    interOpThreads: 1,
    ...(manifest?.input?.name ? { inputName: manifest.input.name } : {}),
  });
  try {
    const shape = runner.info.inputShape;
    const inputWidth = manifest?.input?.width ?? (typeof shape[3] === 'number' ? shape[3] : undefined);
    const inputHeight = manifest?.input?.height ?? (typeof shape[2] === 'number' ? shape[2] : undefined);
    if (!inputWidth || !inputHeight) throw new Error(`input size unknown (input shape [${shape.join(', ')}])`);
    const fixedBatch = typeof shape[0] === 'number' && shape[0] > 0 ? shape[0] : undefined;
    const grey = new Uint8Array(inputWidth * inputHeight * 3).fill(LETTERBOX_PAD_VALUE);
    const { dims } = await runner.run(
      Array.from({ length: fixedBatch ?? 1 }, () => grey),
      inputWidth,
      inputHeight,
    );
    return { inputName: runner.info.inputName, inputWidth, inputHeight, inputShape: shape, outputDims: dims, fixedBatch };
  } finally {
    await runner.close();
  }
}
