import { apiErrorOf } from '../errors.js';

/**
 * The `reason` of sightline_frames_dropped_total for a frame that failed: its
 * error code in lower case (a closed set, so the label stays bounded), else
 * `internal_error`.
 */
export function dropReason(err: unknown): string {
  return apiErrorOf(err)?.code.toLowerCase() ?? 'internal_error';
}
