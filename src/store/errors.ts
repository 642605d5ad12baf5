import { Errors } from '../errors.js';

/** STORE_UNAVAILABLE (503): the result store cannot be reached or is closed; a client may retry later. */
export const StoreUnavailable = Errors.STORE_UNAVAILABLE;

// Failures that say "the database is not there right now", not "this query is
// wrong": pg connection errors (SQLSTATE classes 08, 53, 57P0x) and socket
// errors, a database file that cannot be reached, sqlite's busy/locked/I-O/disk states.
const SYSTEM_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EAI_AGAIN',
  'EPIPE',
  'EACCES',
  'EPERM',
  'ENOENT',
  'ENOTDIR',
  'EEXIST',
  'EROFS',
  'ENOSPC',
]);
const SQLITE_PREFIXES = ['SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_CANTOPEN', 'SQLITE_FULL', 'SQLITE_IOERR', 'SQLITE_READONLY'];

export function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (SYSTEM_CODES.has(code)) return true;
    if (/^(08|53)[0-9A-Z]{3}$/.test(code) || /^57P0[1-3]$/.test(code)) return true;
    if (SQLITE_PREFIXES.some((p) => code.startsWith(p))) return true;
  }
  // pg and better-sqlite3 report these without a code.
  return /Connection terminated|timeout exceeded when trying to connect|connection is not open|driver has already been destroyed/i.test(err.message);
}

/** The error to throw for a failed store operation: STORE_UNAVAILABLE when the database is out of reach. */
export function storeError(err: unknown): unknown {
  if (!isUnavailable(err)) return err;
  return new StoreUnavailable((err as Error).message, { cause: err });
}
