import { TUS_RESUMABLE } from '@tus/server';

/** A byte count or offset as tus requires it: a non-negative integer in plain decimal (no sign, exponent, fraction, hex or leading zero). */
const PLAIN_INTEGER = /^(0|[1-9]\d*)$/;

export function isTusInteger(value: string): boolean {
  return PLAIN_INTEGER.test(value) && Number.isSafeInteger(Number(value));
}

/**
 * The header rules tus applies before it handles a request, for the requests
 * answered without tus (an upload that is already a job): Number() alone would
 * take `0x10`, `16.0` or `1.6e1` for 16 and `1e999` for Infinity. Returns the
 * names of the headers that break them.
 */
export function invalidTusHeaders(headers: Headers): string[] {
  const invalid: string[] = [];
  for (const name of ['upload-offset', 'upload-length']) {
    const value = headers.get(name);
    if (value !== null && !isTusInteger(value)) invalid.push(name);
  }
  const defer = headers.get('upload-defer-length');
  if (defer !== null && defer !== '1') invalid.push('upload-defer-length');
  const version = headers.get('tus-resumable');
  if (version !== null && version !== TUS_RESUMABLE) invalid.push('tus-resumable');
  return invalid;
}
