import type { CameraState } from '../protocol/lines.js';

export interface StateThresholds {
  staleAfterMs: number;
  offlineAfterMs: number;
}

/** What a camera's last frame makes of it now (a camera with no frame yet is offline). */
export function cameraStateAt(lastFrameAt: number | null, now: number, t: StateThresholds): CameraState {
  if (lastFrameAt === null) return 'offline';
  const silent = now - lastFrameAt;
  if (silent < t.staleAfterMs) return 'online';
  if (silent < t.offlineAfterMs) return 'stale';
  return 'offline';
}

const RANK: Record<CameraState, number> = { online: 0, stale: 1, offline: 2 };

/** A line is as alive as its best camera. */
export function bestState(states: readonly CameraState[]): CameraState {
  return states.reduce<CameraState>((best, s) => (RANK[s] < RANK[best] ? s : best), 'offline');
}
