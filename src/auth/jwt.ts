import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTVerifyOptions } from 'jose';
import type { Config } from '../config/schema.js';
import { ROLES, type Identity, type Role } from './identity.js';

const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'];
/** jose refuses an algorithm that does not fit the key's type (an RSA key cannot verify ES256). */
const PUBLIC_KEY_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];
/** Clock skew allowed between the token issuer and this server for exp and nbf. */
export const CLOCK_TOLERANCE_S = 30;
/** Shorter HMAC secrets are guessable offline from any token: warn at start. */
export const MIN_SECRET_BYTES = 32;

/** A bearer token that is not a valid JWT for this server; the message says why, for the 401. */
export class InvalidToken extends Error {}

export interface JwtVerifier {
  /** What the log line at start says: `HS* secret`, `public key FILE`, or both. */
  readonly describe: string;
  /** The identity in a valid token; rejects with InvalidToken otherwise. */
  verify(token: string): Promise<Identity>;
}

/** Whether a presented credential is shaped like a JWT (three base64url parts). */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

/**
 * `roles` claim: an array or a space-separated string (OAuth `scope` style);
 * anything that is not a known role is ignored.
 */
export function rolesFromClaim(claim: unknown): Role[] {
  const names = Array.isArray(claim) ? claim : typeof claim === 'string' ? claim.split(/\s+/) : [];
  return ROLES.filter((role) => names.includes(role));
}

/**
 * Verifies JWT bearer tokens against `auth_jwt_secret` (HS256/384/512) and/or the
 * PEM public key in `auth_jwt_public_key_file` (RS*, PS*, ES*, EdDSA); undefined
 * when neither is set. `exp` is required and `exp`/`nbf` are always checked; `iss`
 * and `aud` when configured. The identity's name is `sub` (required); its roles
 * come from the `roles` claim.
 */
export function jwtVerifierFromConfig(
  config: Pick<Config, 'auth_jwt_secret' | 'auth_jwt_public_key_file' | 'auth_jwt_issuer' | 'auth_jwt_audience'>,
): JwtVerifier | undefined {
  const secret = config.auth_jwt_secret ? new TextEncoder().encode(config.auth_jwt_secret) : undefined;
  let publicKey: KeyObject | undefined;
  if (config.auth_jwt_public_key_file) {
    let pem: string;
    try {
      pem = readFileSync(config.auth_jwt_public_key_file, 'utf8');
    } catch (err) {
      throw new Error(`cannot read auth_jwt_public_key_file ${config.auth_jwt_public_key_file}: ${(err as Error).message}`);
    }
    try {
      publicKey = createPublicKey(pem);
    } catch (err) {
      throw new Error(`auth_jwt_public_key_file ${config.auth_jwt_public_key_file} holds no PEM public key: ${(err as Error).message}`);
    }
  }
  if (!secret && !publicKey) return undefined;

  const common: JWTVerifyOptions = {
    requiredClaims: ['exp', 'sub'],
    clockTolerance: CLOCK_TOLERANCE_S,
    ...(config.auth_jwt_issuer ? { issuer: config.auth_jwt_issuer } : {}),
    ...(config.auth_jwt_audience ? { audience: config.auth_jwt_audience } : {}),
  };
  const describe = [secret ? 'HS256/384/512 secret' : '', publicKey ? `${publicKey.asymmetricKeyType} public key ${config.auth_jwt_public_key_file}` : '']
    .filter(Boolean)
    .join(' and ');

  return {
    describe,
    async verify(token: string): Promise<Identity> {
      let alg: string | undefined;
      try {
        alg = decodeProtectedHeader(token).alg;
      } catch {
        throw new InvalidToken('malformed JWT');
      }
      const hmac = typeof alg === 'string' && alg.startsWith('HS');
      const key = hmac ? secret : publicKey;
      if (!key) throw new InvalidToken(`JWT algorithm ${alg ?? '(none)'} is not accepted here`);
      try {
        const { payload } = await jwtVerify(token, key, { ...common, algorithms: hmac ? HMAC_ALGORITHMS : PUBLIC_KEY_ALGORITHMS });
        return { name: String(payload.sub), via: 'jwt', roles: rolesFromClaim(payload.roles), expiresAt: Number(payload.exp) * 1000 };
      } catch (err) {
        throw new InvalidToken(reason(err));
      }
    },
  };
}

/** A short reason for the 401 that says what to fix without echoing the token. */
function reason(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'JWT expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `JWT claim ${err.claim} ${err.reason === 'missing' ? 'is missing' : 'is not accepted'}`;
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'JWT signature does not verify';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'JWT algorithm not accepted';
  return 'invalid JWT';
}
