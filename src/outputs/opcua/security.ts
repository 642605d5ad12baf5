import { createHash, timingSafeEqual } from 'node:crypto';
import { MessageSecurityMode, SecurityPolicy, type UserManagerOptions } from 'node-opcua';
import type { Config } from '../../config/schema.js';

/** The endpoints and user policy the server offers, from opcua_security, opcua_username and opcua_password. */
export interface SecurityOptions {
  securityPolicies: SecurityPolicy[];
  securityModes: MessageSecurityMode[];
  allowAnonymous: boolean;
  userManager?: UserManagerOptions;
}

/** `none,basic256sha256` → the policies and modes of its endpoints (Basic256Sha256 both signed and signed-and-encrypted). */
export function securityOptions(config: Config): SecurityOptions {
  const names = new Set(
    config.opcua_security
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );
  const securityPolicies: SecurityPolicy[] = [];
  const securityModes: MessageSecurityMode[] = [];
  if (names.has('none')) {
    securityPolicies.push(SecurityPolicy.None);
    securityModes.push(MessageSecurityMode.None);
  }
  if (names.has('basic256sha256')) {
    securityPolicies.push(SecurityPolicy.Basic256Sha256);
    securityModes.push(MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt);
  }
  if (!config.opcua_username) return { securityPolicies, securityModes, allowAnonymous: true };
  const user = config.opcua_username;
  const password = config.opcua_password;
  return {
    securityPolicies,
    securityModes,
    allowAnonymous: false,
    userManager: { isValidUser: (username: string, given: string) => sameSecret(username, user) && sameSecret(given, password) },
  };
}

/** Compares digests, so that neither the content nor the length of a secret shows in the time a refusal takes. */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}
