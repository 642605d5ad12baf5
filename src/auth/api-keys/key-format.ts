import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * The key a client sends: `sl_<id>_<secret>`. The `sl_` prefix makes a leaked
 * key recognisable (secret scanners, logs); the id (16 hex digits) finds the row
 * without revealing anything; the secret is 32 random bytes, base64url.
 */
const KEY = /^sl_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
export const KEY_PREFIX = 'sl_';
const SECRET_BYTES = 32;

export interface KeyParts {
  id: string;
  secret: string;
}

export function newKey(): KeyParts & { key: string } {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(SECRET_BYTES).toString('base64url');
  return { id, secret, key: `${KEY_PREFIX}${id}_${secret}` };
}

/** The id and secret of a well-formed key, else undefined. */
export function parseKey(key: string): KeyParts | undefined {
  const m = KEY.exec(key);
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

/**
 * SHA-256 of the secret, hex. A fast hash is the right tool here: the secret
 * is 256 random bits, so there is no dictionary to try and brute force is out
 * of reach whatever the hash costs; slow password hashes (bcrypt, scrypt,
 * argon2) protect low-entropy passwords and would only add milliseconds of CPU
 * to every request.
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Compares a presented secret with a stored hash in constant time. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const presented = Buffer.from(hashSecret(secret), 'hex');
  const stored = Buffer.from(storedHash, 'hex');
  return stored.length === presented.length && timingSafeEqual(presented, stored);
}
