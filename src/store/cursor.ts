import { Errors } from '../errors.js';

/** The last row of a page: where the next page starts (exclusive), newest first. */
export interface Keyset {
  createdAt: number;
  requestId: string;
}

// Opaque to clients so that the paging key can change without an API change.
export function encodeCursor(k: Keyset): string {
  return Buffer.from(JSON.stringify([k.createdAt, k.requestId])).toString('base64url');
}

export function decodeCursor(cursor: string): Keyset {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    value = undefined;
  }
  // A NUL in the text would make PostgreSQL fail the query (a 500) where SQLite just finds nothing: both refuse it here.
  if (
    !Array.isArray(value) ||
    value.length !== 2 ||
    !Number.isSafeInteger(value[0]) ||
    typeof value[1] !== 'string' ||
    value[1] === '' ||
    value[1].includes('\u0000')
  ) {
    throw new Errors.INVALID_REQUEST('cursor is not one that this server issued');
  }
  return { createdAt: value[0] as number, requestId: value[1] };
}
