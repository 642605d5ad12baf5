import type { ApiKeyStore } from './api-keys/index.js';
import type { Identity } from './identity.js';
import { CLOCK_TOLERANCE_S } from './jwt.js';

/** Why a watched session's credentials stopped holding. */
export type CredentialEnd = 'revoked' | 'expired';

interface WatchLogger {
  warn(obj: object, msg?: string): void;
}

interface Watched {
  keyId: string | undefined;
  onEnd: (why: CredentialEnd) => void;
  timer: NodeJS.Timeout | undefined;
}

/** setTimeout's longest delay; a later expiry re-arms on the way. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Keeps long-lived sessions (WebSocket streams) honest about the credentials
 * they were opened with. An HTTP request is checked when it arrives; a session
 * lives on, so:
 *
 * - API keys of open sessions are looked up again every `intervalMs`, all in
 *   one query: a key revoked from any process (`sightline keys revoke`, another
 *   replica) ends its sessions on the next round. When the store cannot answer,
 *   sessions stay open (a database blip must not drop every camera) and the
 *   next round tries again.
 * - A JWT ends its session when a new request with it would be refused: at
 *   `exp` plus the clock tolerance the verifier allows.
 *
 * Identities without credentials (loopback in auth=auto, auth=off) are not watched.
 */
export class CredentialWatch {
  private readonly sessions = new Set<Watched>();
  /** Watched sessions with an API key (the periodic check runs while there are any). */
  private keyed = 0;
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  private failing = false;
  private stopped = false;

  constructor(
    private readonly apiKeys: Pick<ApiKeyStore, 'activeIds'>,
    private readonly intervalMs: number,
    private readonly logger?: WatchLogger,
  ) {}

  /** Calls `onEnd` once when `identity`'s credentials stop holding; the returned function stops watching. */
  watch(identity: Identity | undefined, onEnd: (why: CredentialEnd) => void): () => void {
    if (this.stopped || !identity) return () => undefined;
    const keyId = identity.via === 'api_key' ? identity.keyId : undefined;
    const expiresAt = identity.via === 'jwt' ? identity.expiresAt : undefined;
    if (keyId === undefined && expiresAt === undefined) return () => undefined;
    const watched: Watched = { keyId, onEnd, timer: undefined };
    this.sessions.add(watched);
    if (expiresAt !== undefined) this.armExpiry(watched, expiresAt + CLOCK_TOLERANCE_S * 1000);
    if (keyId !== undefined) {
      this.keyed++;
      this.startChecking();
    }
    return () => this.forget(watched);
  }

  /** Sessions being watched (tests). */
  get size(): number {
    return this.sessions.size;
  }

  /** Stops every timer; sessions are no longer watched. */
  stop(): void {
    this.stopped = true;
    for (const watched of this.sessions) clearTimeout(watched.timer);
    this.sessions.clear();
    this.keyed = 0;
    this.stopChecking();
  }

  /** One round: the key ids of every watched session, one lookup, the revoked ones ended. */
  async check(): Promise<void> {
    if (this.checking) return;
    const ids = new Set<string>();
    for (const watched of this.sessions) if (watched.keyId !== undefined) ids.add(watched.keyId);
    if (ids.size === 0) return;
    this.checking = true;
    try {
      const active = await this.apiKeys.activeIds([...ids]);
      if (this.failing) this.logger?.warn({ event: 'auth_recheck_recovered' }, 'API keys of open sessions can be checked again');
      this.failing = false;
      for (const watched of [...this.sessions]) {
        if (watched.keyId !== undefined && !active.has(watched.keyId)) this.end(watched, 'revoked');
      }
    } catch (err) {
      if (!this.failing) {
        this.logger?.warn(
          { event: 'auth_recheck_failed', error_message: (err as Error).message },
          `API keys of open sessions cannot be checked (sessions stay open): ${(err as Error).message}`,
        );
      }
      this.failing = true;
    } finally {
      this.checking = false;
    }
  }

  private armExpiry(watched: Watched, at: number): void {
    const delay = at - Date.now();
    watched.timer = setTimeout(
      () => {
        if (!this.sessions.has(watched)) return;
        if (Date.now() >= at) this.end(watched, 'expired');
        else this.armExpiry(watched, at);
      },
      Math.max(0, Math.min(delay, MAX_TIMER_MS)),
    );
    watched.timer.unref();
  }

  private end(watched: Watched, why: CredentialEnd): void {
    if (!this.sessions.has(watched)) return;
    this.forget(watched);
    watched.onEnd(why);
  }

  private forget(watched: Watched): void {
    clearTimeout(watched.timer);
    if (!this.sessions.delete(watched) || watched.keyId === undefined) return;
    if (--this.keyed === 0) this.stopChecking();
  }

  private startChecking(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  private stopChecking(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
