import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A minimal RTSP server for tests, in the role of mediamtx or a camera's own
 * server: a publisher (ffmpeg `-f rtsp`, which ANNOUNCEs and RECORDs) sends
 * RTP interleaved over TCP, and every player (ffmpeg as a client: OPTIONS,
 * DESCRIBE, SETUP, PLAY) gets the same packets, interleaved over TCP on the
 * channels it asked for. ffmpeg can encode and packetise a stream, but its
 * `-rtsp_flags listen` only accepts publishers (it is a demuxer option), so it
 * cannot serve a camera's stream by itself; this relay is the server part.
 *
 * RTSP over UDP is not served (SETUP without `RTP/AVP/TCP` gets 461), which is
 * also what Sightline asks for (`-rtsp_transport tcp`). When the publisher goes
 * away, every player's connection is closed, as a camera that is switched off
 * or a server whose path has no publisher: a new DESCRIBE gets 404 until a
 * publisher is back.
 */
export class RtspRelay {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  /** The publisher's SDP while one is recording. */
  #sdp: string | undefined;
  #publisher: Socket | undefined;
  /** Players that sent PLAY, with the interleaved channel of each of their streams (by stream index). */
  readonly #players = new Map<Socket, Map<number, number>>();
  #sessions = 0;
  /** RTSP requests received, for tests that show what a client did. */
  readonly requests: string[] = [];
  /** The Transport header of every SETUP. */
  readonly setups: string[] = [];

  private constructor() {
    this.#server = createServer((socket) => this.#accept(socket));
  }

  static async listen(port = 0): Promise<RtspRelay> {
    const relay = new RtspRelay();
    await new Promise<void>((resolve, reject) => {
      relay.#server.once('error', reject);
      relay.#server.listen(port, '127.0.0.1', () => resolve());
    });
    return relay;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  url(path = 'live'): string {
    return `rtsp://127.0.0.1:${this.port}/${path}`;
  }

  /** Whether a publisher is recording (its SDP announced and RECORD sent). */
  get publishing(): boolean {
    return this.#publisher !== undefined;
  }

  get players(): number {
    return this.#players.size;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(socket: Socket): void {
    this.#sockets.add(socket);
    let buffer: Buffer = Buffer.alloc(0);
    const streams = new Map<number, number>(); // stream index → interleaved RTP channel
    let recording = false;
    socket.on('data', (chunk: Buffer) => {
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
      for (;;) {
        if (buffer.length === 0) return;
        if (buffer[0] === 0x24) {
          // Interleaved binary data: '$', channel, 16-bit length, payload.
          if (buffer.length < 4) return;
          const length = buffer.readUInt16BE(2);
          if (buffer.length < 4 + length) return;
          const channel = buffer[1]!;
          const packet = buffer.subarray(4, 4 + length);
          buffer = buffer.subarray(4 + length);
          // From the publisher: relayed; from a player: its RTCP receiver reports, dropped.
          if (recording && socket === this.#publisher) this.#relay(channel, packet);
          continue;
        }
        const headEnd = buffer.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        const head = buffer.subarray(0, headEnd).toString('latin1');
        const headers = new Map<string, string>();
        const [requestLine = '', ...lines] = head.split('\r\n');
        for (const line of lines) {
          const colon = line.indexOf(':');
          if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
        }
        const bodyLength = Number(headers.get('content-length') ?? 0);
        if (buffer.length < headEnd + 4 + bodyLength) return;
        const body = buffer.subarray(headEnd + 4, headEnd + 4 + bodyLength).toString('latin1');
        buffer = buffer.subarray(headEnd + 4 + bodyLength);
        const [method = '', url = ''] = requestLine.split(' ');
        this.requests.push(method);
        const reply = (status: string, extra: Record<string, string> = {}, content = '') => {
          const out = [`RTSP/1.0 ${status}`, `CSeq: ${headers.get('cseq') ?? '0'}`, 'Server: sightline-test-relay'];
          for (const [k, v] of Object.entries(extra)) out.push(`${k}: ${v}`);
          if (content) out.push(`Content-Length: ${Buffer.byteLength(content)}`);
          socket.write(`${out.join('\r\n')}\r\n\r\n${content}`);
        };
        const session = () => headers.get('session')?.split(';')[0] ?? String(++this.#sessions);
        switch (method) {
          case 'OPTIONS':
            reply('200 OK', { Public: 'OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, TEARDOWN, GET_PARAMETER' });
            break;
          case 'ANNOUNCE':
            if (this.#publisher && this.#publisher !== socket) reply('455 Method Not Valid in This State');
            else {
              this.#sdp = body;
              this.#publisher = socket;
              reply('200 OK');
            }
            break;
          case 'DESCRIBE':
            if (!this.#sdp) reply('404 Not Found');
            else reply('200 OK', { 'Content-Type': 'application/sdp', 'Content-Base': `${url.replace(/\/$/, '')}/` }, this.#sdp);
            break;
          case 'SETUP': {
            const transport = headers.get('transport') ?? '';
            this.setups.push(transport);
            const interleaved = /interleaved=(\d+)/.exec(transport);
            if (!/RTP\/AVP\/TCP/i.test(transport) || !interleaved) {
              reply('461 Unsupported Transport');
              break;
            }
            const index = Number(/streamid=(\d+)/.exec(url)?.[1] ?? 0);
            streams.set(index, Number(interleaved[1]));
            reply('200 OK', { Transport: transport, Session: `${session()};timeout=60` });
            break;
          }
          case 'RECORD':
            recording = socket === this.#publisher;
            reply(recording ? '200 OK' : '455 Method Not Valid in This State', { Session: session() });
            break;
          case 'PLAY':
            if (!this.#sdp || streams.size === 0) reply('455 Method Not Valid in This State');
            else {
              reply('200 OK', { Session: session(), Range: 'npt=0.000-' });
              this.#players.set(socket, streams);
            }
            break;
          case 'GET_PARAMETER':
            reply('200 OK', { Session: session() });
            break;
          case 'TEARDOWN':
            reply('200 OK', { Session: session() });
            this.#players.delete(socket);
            break;
          default:
            reply('501 Not Implemented');
        }
      }
    });
    const gone = () => {
      this.#sockets.delete(socket);
      this.#players.delete(socket);
      if (socket === this.#publisher) {
        // The stream is gone: so are its players' sessions.
        this.#publisher = undefined;
        this.#sdp = undefined;
        for (const player of this.#players.keys()) player.destroy();
        this.#players.clear();
      }
    };
    socket.on('close', gone);
    socket.on('error', () => socket.destroy());
  }

  /** A publisher's packet on `channel` (2 × stream index for RTP, + 1 for RTCP) to every player. */
  #relay(channel: number, packet: Buffer): void {
    const index = channel >> 1;
    for (const [player, streams] of this.#players) {
      const base = streams.get(index);
      if (base === undefined || !player.writable) continue;
      const frame = Buffer.allocUnsafe(4 + packet.length);
      frame[0] = 0x24;
      frame[1] = base + (channel & 1);
      frame.writeUInt16BE(packet.length, 2);
      packet.copy(frame, 4);
      player.write(frame);
    }
  }
}

/** The video codec a test publisher uses: H.264 as most IP cameras send it, MPEG-4 part 2 where libx264 is missing. */
export function publisherCodec(): string[] {
  const encoders = spawnSync('ffmpeg', ['-hide_banner', '-encoders'], { encoding: 'utf8' }).stdout ?? '';
  return /\blibx264\b/.test(encoders)
    ? ['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p', '-g', '10']
    : ['-c:v', 'mpeg4', '-g', '10'];
}

/**
 * A camera: ffmpeg encodes `input` in real time and publishes it to `url` over
 * RTSP (TCP). Returns the ffmpeg process; kill it to cut the stream.
 */
export function publish(url: string, input: string[], codec = publisherCodec()): ChildProcess {
  return spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', ...input, '-an', ...codec, '-f', 'rtsp', '-rtsp_transport', 'tcp', url], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}
