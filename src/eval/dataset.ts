import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join, relative, sep, extname } from 'node:path';
import { parse as parseYaml } from 'yaml';

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp']);

export interface DatasetImage {
  path: string;
  /**
   * YOLO txt rows: class and normalised centre/size. A YOLO-seg row (`class x1 y1 x2 y2 …`,
   * three points or more) keeps its normalised `polygon` and gets the box around it.
   */
  labels: { classId: number; cx: number; cy: number; w: number; h: number; polygon?: number[] }[];
}

export interface Dataset {
  /** Class names from data.yaml, when it has them. */
  names?: string[];
  images: DatasetImage[];
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    return e.isDirectory() ? walk(path) : [path];
  });
}

function readNames(dir: string): string[] | undefined {
  const yamlPath = ['data.yaml', 'data.yml'].map((f) => join(dir, f)).find(existsSync);
  if (!yamlPath) return undefined;
  const data = parseYaml(readFileSync(yamlPath, 'utf8')) as { names?: string[] | Record<string, string> } | null;
  const names = data?.names;
  if (!names) return undefined;
  if (Array.isArray(names)) return names.map(String);
  return Object.entries(names)
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([, v]) => String(v));
}

/** A YOLO-seg row: the polygon as given, and the box around it (as Ultralytics derives it). */
function polygonLabel(classId: number, polygon: number[]): DatasetImage['labels'][number] {
  const xs = polygon.filter((_, i) => i % 2 === 0);
  const ys = polygon.filter((_, i) => i % 2 === 1);
  const [x1, x2, y1, y2] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  return { classId, cx: (x1 + x2) / 2, cy: (y1 + y2) / 2, w: x2 - x1, h: y2 - y1, polygon };
}

/**
 * Reads a dataset in the Ultralytics layout: `images/` (any depth) and, beside it,
 * `labels/` with one YOLO txt per image (`class cx cy w h`, normalised; an empty
 * or missing file means no object), names from `data.yaml`.
 */
export function readDataset(dir: string): Dataset {
  const imagesDir = join(dir, 'images');
  if (!existsSync(imagesDir)) throw new Error(`${dir} has no images/ folder (Ultralytics layout expected)`);
  const images = walk(imagesDir)
    .filter((p) => IMAGE_EXTENSIONS.has(extname(p).toLowerCase()))
    .sort()
    .map((path) => {
      const rel = relative(imagesDir, path);
      const labelPath = join(dir, 'labels', rel.slice(0, -extname(rel).length) + '.txt');
      const labels = existsSync(labelPath)
        ? readFileSync(labelPath, 'utf8')
            .split('\n')
            .map((l) => l.trim())
            .filter(Boolean)
            .map((line, i) => {
              const parts = line.split(/\s+/).map(Number);
              // Five numbers are a box (a sixth, e.g. a confidence, is ignored); seven or more a polygon.
              if (parts.length < 5 || parts.some((v) => !Number.isFinite(v)) || (parts.length >= 7 && parts.length % 2 === 0)) {
                throw new Error(`${labelPath}${sep}line ${i + 1}: expected "class cx cy w h" or a polygon "class x1 y1 x2 y2 x3 y3 …"`);
              }
              if (parts.length >= 7) return polygonLabel(parts[0]!, parts.slice(1));
              const [classId, cx, cy, w, h] = parts as [number, number, number, number, number];
              return { classId, cx, cy, w, h };
            })
        : [];
      return { path, labels };
    });
  return { names: readNames(dir), images };
}
