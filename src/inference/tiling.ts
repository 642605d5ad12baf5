/**
 * Tiled inference of large frames (docs/models.md#tiled-inference): where the tiles
 * lie, when a request is tiled, and how the boxes of all tiles become one answer.
 * Pure functions on numbers; the pixels and the model runs are in tiled-detect.ts.
 */
import type { TilingMode } from '../protocol/options.js';
import type { TilingSettings } from './model-manifest.js';
import { nonMaxSuppression, type Candidate, type NmsOptions } from './postprocess/nms.js';
import type { PixelRect } from './preprocess.js';

/** What a model without a `tiling` block gets when a request asks for `auto` or `on`. */
export const DEFAULT_TILING: TilingSettings = { mode: 'auto', min_ratio: 2, overlap: 0.2, scale: 1, full_view: true, max_tiles: 64 };

/**
 * How far from a tile's inner edge (in model-input pixels) a box still counts as
 * cut by it: detectors rarely put a box's side on the last pixel of their input.
 */
export const EDGE_TOLERANCE_INPUT_PX = 4;

/**
 * Two pieces of one object cut by a tile edge must agree on the other axis: their
 * extents across the cut overlap by at least this share of the shorter one. Lower
 * joins neighbouring objects of one label; higher leaves diagonal objects in pieces.
 */
export const JOIN_MIN_OVERLAP = 0.5;

/** A request's tiling: the request's mode over the model's, and the model's settings (or the defaults). */
export function tilingFor(model: TilingSettings | undefined, requested: TilingMode | undefined): TilingSettings {
  const settings = model ?? DEFAULT_TILING;
  // A model without a block keeps its one letterboxed view unless the request asks: tiling costs one inference per tile.
  const mode = requested ?? (model ? model.mode : 'off');
  return { ...settings, mode };
}

/**
 * `auto` tiles when the image is larger than min_ratio × the input on both axes (for
 * a square input: its short side is): below that, one letterboxed view loses little
 * resolution and tiles would only multiply the work.
 */
export function shouldTile(settings: TilingSettings, width: number, height: number, inputWidth: number, inputHeight: number): boolean {
  if (settings.mode === 'off') return false;
  if (settings.mode === 'on') return true;
  return Math.min(width / inputWidth, height / inputHeight) > settings.min_ratio;
}

/**
 * Starts of tiles of `tile` pixels along an axis of `size` pixels: the first at 0, the
 * last flush with the end, evenly spaced with at least `overlap` × tile shared by
 * neighbours (more where the spacing rounds up). One tile when the axis fits in it.
 */
export function axisStarts(size: number, tile: number, overlap: number): number[] {
  if (size <= tile) return [0];
  const stride = Math.max(1, tile - Math.ceil(tile * overlap));
  const n = Math.ceil((size - tile) / stride) + 1;
  return Array.from({ length: n }, (_, i) => Math.round((i * (size - tile)) / (n - 1)));
}

export interface TilePlan {
  /** The tiles, row by row, in image pixels. */
  tiles: PixelRect[];
  /** Image pixels per input pixel in a tile: settings.scale, or more when max_tiles forced it. */
  scale: number;
  /** Whether the downscaled whole image runs too. */
  fullView: boolean;
}

/**
 * The tiles of a width × height image for a model input: each covers input × scale
 * image pixels (cut to the image where it is smaller), overlapping by `overlap`.
 * Over max_tiles, the scale grows by steps of 10 % until the grid fits: a huge
 * image is still answered, at less than native resolution.
 */
export function planTiles(width: number, height: number, inputWidth: number, inputHeight: number, settings: TilingSettings): TilePlan {
  let scale = settings.scale;
  for (;;) {
    const tw = Math.min(width, Math.round(inputWidth * scale));
    const th = Math.min(height, Math.round(inputHeight * scale));
    const xs = axisStarts(width, tw, settings.overlap);
    const ys = axisStarts(height, th, settings.overlap);
    if (xs.length * ys.length <= settings.max_tiles) {
      const tiles = ys.flatMap((y) => xs.map((x) => ({ x, y, width: tw, height: th })));
      return { tiles, scale, fullView: settings.full_view };
    }
    scale *= 1.1;
  }
}

/** A candidate in image pixels and the run it came from: an index into the tiles, or -1 for the full view. */
export interface PlacedCandidate extends Candidate {
  tile: number;
}

const LEFT = 1;
const RIGHT = 2;
const TOP = 4;
const BOTTOM = 8;

/** The inner edges of its tile (those that are not the image's own border) a box touches. */
function cutEdges(c: PlacedCandidate, tiles: readonly PixelRect[], width: number, height: number, tolerance: number): number {
  const t = tiles[c.tile];
  if (!t) return 0;
  let edges = 0;
  if (t.x > 0 && c.x1 <= t.x + tolerance) edges |= LEFT;
  if (t.x + t.width < width && c.x2 >= t.x + t.width - tolerance) edges |= RIGHT;
  if (t.y > 0 && c.y1 <= t.y + tolerance) edges |= TOP;
  if (t.y + t.height < height && c.y2 >= t.y + t.height - tolerance) edges |= BOTTOM;
  return edges;
}

/** Overlap of [a1, a2] and [b1, b2] as a share of the shorter one. */
function overlapShare(a1: number, a2: number, b1: number, b2: number): number {
  const shorter = Math.min(a2 - a1, b2 - b1);
  if (shorter <= 0) return 0;
  return Math.max(0, Math.min(a2, b2) - Math.max(a1, b1)) / shorter;
}

/**
 * Whether `b` continues `a` across an edge that cut `a`: it reaches past that edge and
 * covers the same span across the cut, and either
 * - it is a piece too, cut by its own tile's facing edge: it must meet `a` there
 *   (overlapping it, or touching it within `tolerance` where tiles share no pixels), or
 * - it is whole on that side (a tile that held the object's end, or the full view):
 *   `a` must then lie mostly within it, so that a stray box at the edge never widens
 *   a good one.
 */
function continues(a: Candidate, aEdges: number, b: Candidate, bEdges: number, tolerance: number): boolean {
  const acrossY = () => overlapShare(a.y1, a.y2, b.y1, b.y2) >= JOIN_MIN_OVERLAP;
  const acrossX = () => overlapShare(a.x1, a.x2, b.x1, b.x2) >= JOIN_MIN_OVERLAP;
  const meetsX = (piece: boolean) => (piece ? b.x1 <= a.x2 + tolerance && b.x2 >= a.x1 - tolerance : acrossX());
  const meetsY = (piece: boolean) => (piece ? b.y1 <= a.y2 + tolerance && b.y2 >= a.y1 - tolerance : acrossY());
  if ((aEdges & RIGHT) !== 0 && b.x2 > a.x2 && meetsX((bEdges & LEFT) !== 0) && acrossY()) return true;
  if ((aEdges & LEFT) !== 0 && b.x1 < a.x1 && meetsX((bEdges & RIGHT) !== 0) && acrossY()) return true;
  if ((aEdges & BOTTOM) !== 0 && b.y2 > a.y2 && meetsY((bEdges & TOP) !== 0) && acrossX()) return true;
  if ((aEdges & TOP) !== 0 && b.y1 < a.y1 && meetsY((bEdges & BOTTOM) !== 0) && acrossX()) return true;
  return false;
}

export interface MergeOptions extends NmsOptions {
  /** Image pixels within which a box counts as touching a tile edge. */
  edgeTolerance: number;
}

/**
 * One answer from the boxes of every tile and the full view, in image pixels:
 * 1. pieces of one object cut by tile edges are joined: a box of a label touching an
 *    inner edge of its tile is joined with a box of the same label from another run
 *    that continues it across that edge (transitively, so an object over a tile
 *    corner becomes one box); the joined box is their union, scored by the best piece;
 * 2. non-maximum suppression over all of them removes what two overlapping tiles (or
 *    a tile and the full view) both found whole.
 * Objects of one label that touch each other across a tile edge may be joined into
 * one box: the price of not answering an object cut in two as two objects.
 */
export function mergeTiled(
  candidates: readonly PlacedCandidate[],
  tiles: readonly PixelRect[],
  width: number,
  height: number,
  options: MergeOptions,
): Candidate[] {
  const n = candidates.length;
  const parent = Int32Array.from({ length: n }, (_, i) => i);
  const find = (start: number): number => {
    let i = start;
    while (parent[i] !== i) {
      // Path halving keeps the chains short.
      parent[i] = parent[parent[i]!]!;
      i = parent[i]!;
    }
    return i;
  };
  const edges = candidates.map((c) => cutEdges(c, tiles, width, height, options.edgeTolerance));
  for (let i = 0; i < n; i++) {
    const a = candidates[i]!;
    if (edges[i] === 0) continue;
    for (let j = 0; j < n; j++) {
      const b = candidates[j]!;
      if (b.tile === a.tile || b.classId !== a.classId) continue;
      if (!continues(a, edges[i]!, b, edges[j]!, options.edgeTolerance)) continue;
      const ra = find(i);
      const rb = find(j);
      if (ra !== rb) parent[ra] = rb;
    }
  }
  const joined = new Map<number, Candidate>();
  for (let i = 0; i < n; i++) {
    const c = candidates[i]!;
    const root = find(i);
    const box = joined.get(root);
    if (!box) {
      joined.set(root, { x1: c.x1, y1: c.y1, x2: c.x2, y2: c.y2, score: c.score, classId: c.classId });
      continue;
    }
    box.x1 = Math.min(box.x1, c.x1);
    box.y1 = Math.min(box.y1, c.y1);
    box.x2 = Math.max(box.x2, c.x2);
    box.y2 = Math.max(box.y2, c.y2);
    box.score = Math.max(box.score, c.score);
  }
  return nonMaxSuppression([...joined.values()], options);
}
