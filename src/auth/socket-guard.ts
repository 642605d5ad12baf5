import type { WebSocket } from 'ws';
import { decodeFrame } from '../protocol/stream.js';
import { hasRole, type Identity, type SocketRoles } from './identity.js';

const MAX_REFUSAL_BUFFER = 1024 * 1024;

/**
 * Holds back the messages that an open WebSocket's identity may not send, per
 * the route's `socketRoles`: binary frames without `frames`' role, `subscribe`
 * messages without `subscribe`'s role. Each refused message gets an `error`
 * message with code FORBIDDEN (and the frame id when the header has one); the
 * connection stays open for what the identity may do.
 *
 * It sits between ws and the route's handler (the handler's `message`
 * listeners never see a refused message), so the stream session needs no
 * knowledge of roles.
 */
export function guardSocket(socket: WebSocket, identity: Identity | undefined, roles: SocketRoles): void {
  if (!identity) return;
  const framesAllowed = roles.frames === undefined || hasRole(identity, roles.frames);
  const subscribeAllowed = roles.subscribe === undefined || hasRole(identity, roles.subscribe);
  if (framesAllowed && subscribeAllowed) return;

  const refuse = (what: string, role: string, id?: string) => {
    const error = { code: 'FORBIDDEN', message: `The ${role} role is needed to ${what}` };
    // A client that floods refused messages without reading gets no more answers, not an ever-growing buffer.
    if (socket.readyState === socket.OPEN && socket.bufferedAmount < MAX_REFUSAL_BUFFER)
      socket.send(JSON.stringify(id === undefined ? { type: 'error', error } : { type: 'error', id, error }));
  };
  const emit = socket.emit.bind(socket);
  socket.emit = ((event: string | symbol, ...args: unknown[]): boolean => {
    if (event === 'message') {
      const [data, isBinary] = args as [Buffer | ArrayBuffer | Buffer[], boolean];
      const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (isBinary && !framesAllowed) {
        refuse('send frames', roles.frames!, frameId(bytes));
        return true;
      }
      if (!isBinary && !subscribeAllowed && isSubscribe(bytes)) {
        refuse('subscribe to lines', roles.subscribe!);
        return true;
      }
    }
    return emit(event, ...args);
  }) as typeof socket.emit;
}

/** The frame's id when its header is readable, so that the client can match the refusal. */
function frameId(bytes: Buffer): string | undefined {
  try {
    const id = (decodeFrame(bytes).header as { id?: unknown } | null)?.id;
    return typeof id === 'string' && id.length <= 128 ? id : undefined;
  } catch {
    return undefined;
  }
}

function isSubscribe(bytes: Buffer): boolean {
  try {
    return (JSON.parse(bytes.toString('utf8')) as { type?: unknown } | null)?.type === 'subscribe';
  } catch {
    return false; // not JSON: the session answers INVALID_MESSAGE itself
  }
}
