import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

export interface ModelFile {
  /** Relative to the version's folder, with `/`. */
  path: string;
  bytes: number;
  sha256: string;
}

export interface ModelVersionInventory {
  name: string;
  version: string;
  files: ModelFile[];
}

/** models.json in a backup: which models and versions were served, and checksums of their files (not the files). */
export interface ModelInventory {
  models_dir: string;
  models: ModelVersionInventory[];
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function filesUnder(dir: string, prefix = ''): Promise<ModelFile[]> {
  const out: ModelFile[] = [];
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const full = join(dir, entry.name);
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await filesUnder(full, rel)));
    else if (entry.isFile()) out.push({ path: rel, bytes: (await stat(full)).size, sha256: await sha256(full) });
  }
  return out;
}

/**
 * The model repository as the server sees it (`<dir>/<name>/<version>/model.onnx`):
 * weights are large and usually come from elsewhere (a registry, an image), so a
 * backup records what was there to check a restored site against, not the bytes.
 */
export async function modelInventory(modelsDir: string): Promise<ModelInventory> {
  const models: ModelVersionInventory[] = [];
  if (existsSync(modelsDir)) {
    for (const name of (await readdir(modelsDir, { withFileTypes: true }))
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort()) {
      for (const version of (await readdir(join(modelsDir, name), { withFileTypes: true }))
        .filter((e) => e.isDirectory())
        .map((e) => e.name)
        .sort()) {
        const dir = join(modelsDir, name, version);
        if (!existsSync(join(dir, 'model.onnx'))) continue;
        models.push({ name, version, files: await filesUnder(dir) });
      }
    }
  }
  return { models_dir: modelsDir, models };
}
