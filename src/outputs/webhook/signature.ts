import { createHmac } from 'node:crypto';

/**
 * The `X-Sightline-Signature` value: HMAC-SHA256 keyed with the secret over
 * `<timestamp>.<body>`, hex. The timestamp is inside the MAC so that a captured
 * request cannot be replayed later with a fresh timestamp header.
 */
export function signature(secret: string, timestamp: number, body: string): string {
  return 'sha256=' + createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
}
