import { crc32 } from 'node:zlib';

/**
 * Framing of the guest agent protocol (docs/AGENT.md "Framing"): a 20-byte
 * little-endian header (magic, type, stream, flags, channel, length, CRC-32)
 * and at most 64 KiB of payload. The decoder is the host's first barrier
 * against a hostile guest: it checks each header before it buffers a payload,
 * so it never holds more than one frame plus one socket chunk.
 */

export const MAGIC = 0x3141434d; // "MCA1" read little-endian
export const HEADER_BYTES = 20;
export const MAX_PAYLOAD = 65536;
export const PROTOCOL_VERSION = 1;

export const FrameType = {
  HELLO: 0x01,
  HELLO_ACK: 0x02,
  PING: 0x03,
  PONG: 0x04,
  ERROR: 0x05,
  EXEC: 0x10,
  STARTED: 0x11,
  DATA: 0x12,
  EOF: 0x13,
  CREDIT: 0x14,
  SIGNAL: 0x15,
  RESIZE: 0x16,
  EXIT: 0x17,
  FILE_READ: 0x20,
  FILE_WRITE: 0x21,
  FILE_INFO: 0x22,
  FILE_READY: 0x23,
  FILE_DONE: 0x24,
  STAT: 0x25,
  CANCEL: 0x26,
  LANE: 0x27,
  LANE_FREE: 0x28,
  REFRESH: 0x30,
  REFRESHED: 0x31,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

const TYPE_NAMES = new Map<number, string>(Object.entries(FrameType).map(([k, v]) => [v, k]));
export function frameTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `0x${type.toString(16)}`;
}

/** Types the guest may send; anything else from it is a protocol error. */
const GUEST_TYPES: ReadonlySet<number> = new Set([
  FrameType.HELLO_ACK, FrameType.PONG, FrameType.ERROR, FrameType.STARTED, FrameType.DATA, FrameType.EOF,
  FrameType.CREDIT, FrameType.EXIT, FrameType.FILE_INFO, FrameType.FILE_READY, FrameType.FILE_DONE, FrameType.REFRESHED,
  FrameType.LANE, FrameType.LANE_FREE,
]);

export interface Frame {
  type: number;
  stream: number;
  channel: number;
  payload: Buffer;
}

/** CRC over the header's first 16 bytes, continued over the payload unless it is DATA. */
function frameCrc(header: Buffer, type: number, payload: Buffer): number {
  const h = crc32(header.subarray(0, 16));
  return type === FrameType.DATA || payload.length === 0 ? h : crc32(payload, h);
}

export function encodeFrame(type: number, stream: number, channel: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  if (payload.length > MAX_PAYLOAD) throw new RangeError(`frame payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD}`);
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  out.writeUInt32LE(MAGIC, 0);
  out.writeUInt8(type, 4);
  out.writeUInt8(stream, 5);
  out.writeUInt16LE(0, 6);
  out.writeUInt32LE(channel >>> 0, 8);
  out.writeUInt32LE(payload.length, 12);
  payload.copy(out, HEADER_BYTES);
  out.writeUInt32LE(frameCrc(out, type, payload), 16);
  return out;
}

/** Why a guest's bytes are not a valid frame (undefined = the header is fine so far). */
export function headerProblem(h: Buffer, maxPayload = MAX_PAYLOAD): string | undefined {
  if (h.readUInt32LE(0) !== MAGIC) return `bad magic 0x${h.readUInt32LE(0).toString(16)}`;
  const type = h.readUInt8(4);
  if (!GUEST_TYPES.has(type)) return `frame type ${frameTypeName(type)} is not one the guest may send`;
  if (h.readUInt16LE(6) !== 0) return `reserved flags 0x${h.readUInt16LE(6).toString(16)} are not zero`;
  const stream = h.readUInt8(5);
  if (stream > 2) return `stream ${stream} does not exist`;
  const len = h.readUInt32LE(12);
  if (len > maxPayload) return `payload length ${len} exceeds ${maxPayload}`;
  if (type === FrameType.DATA && crc32(h.subarray(0, 16)) !== h.readUInt32LE(16)) return 'header CRC mismatch';
  return undefined;
}

export class FrameError extends Error {
  constructor(readonly reason: string, readonly offset: number) {
    super(reason);
  }
}

/**
 * Strict incremental decoder for the guest→host byte stream of a session
 * (after the handshake). Throws FrameError at the first bad byte.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private offset = 0;

  constructor(private readonly maxPayload = MAX_PAYLOAD) {}

  /** Feeds bytes; returns the complete frames they finish. */
  push(chunk: Buffer): Frame[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const frames: Frame[] = [];
    while (this.buffered >= HEADER_BYTES) {
      const head = this.peek(HEADER_BYTES);
      const problem = headerProblem(head, this.maxPayload);
      if (problem) throw new FrameError(problem, this.offset);
      const len = head.readUInt32LE(12);
      if (this.buffered < HEADER_BYTES + len) break;
      const whole = this.take(HEADER_BYTES + len);
      const type = whole.readUInt8(4);
      const payload = whole.subarray(HEADER_BYTES);
      if (type !== FrameType.DATA && frameCrc(whole, type, payload) !== whole.readUInt32LE(16)) {
        throw new FrameError(`CRC mismatch in a ${frameTypeName(type)} frame`, this.offset);
      }
      frames.push({ type, stream: whole.readUInt8(5), channel: whole.readUInt32LE(8), payload });
      this.offset += HEADER_BYTES + len;
    }
    return frames;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!.subarray(0, n);
    const all = Buffer.concat(this.chunks);
    this.chunks = [all];
    return all.subarray(0, n);
  }

  private take(n: number): Buffer {
    let out: Buffer;
    if (this.chunks[0]!.length >= n) {
      out = this.chunks[0]!.subarray(0, n);
      this.chunks[0] = this.chunks[0]!.subarray(n);
      if (this.chunks[0].length === 0) this.chunks.shift();
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }
}

/**
 * Finds the guest's answer to our HELLO in a stream that may start with
 * anything (the end of a frame the guest was writing when it was snapshotted,
 * output of a previous session): the first well-formed HELLO_ACK or ERROR on
 * channel 0 whose records carry our nonce. Keeps only the bytes that could
 * still start such a frame, and counts what it skipped.
 */
export class HandshakeScanner {
  private buf: Buffer = Buffer.alloc(0);
  skipped = 0;

  constructor(private readonly matches: (frame: Frame) => boolean) {}

  /** Feeds bytes; returns the answer frame and the bytes after it, once found. */
  push(chunk: Buffer): { frame: Frame; rest: Buffer } | undefined {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let i = 0;
    for (;;) {
      const at = this.buf.indexOf(MAGIC_BYTES, i);
      if (at < 0) {
        // Keep the last 3 bytes: they may be the start of a split magic.
        const keep = Math.min(this.buf.length, 3);
        this.skipped += this.buf.length - keep;
        this.buf = Buffer.from(this.buf.subarray(this.buf.length - keep));
        return undefined;
      }
      if (this.buf.length - at < HEADER_BYTES) {
        this.skipped += at;
        this.buf = Buffer.from(this.buf.subarray(at));
        return undefined;
      }
      const h = this.buf.subarray(at, at + HEADER_BYTES);
      const type = h.readUInt8(4);
      const len = h.readUInt32LE(12);
      const plausible =
        (type === FrameType.HELLO_ACK || type === FrameType.ERROR) && h.readUInt32LE(8) === 0 && h.readUInt16LE(6) === 0 && len <= MAX_PAYLOAD;
      if (!plausible) {
        i = at + 1;
        continue;
      }
      if (this.buf.length - at < HEADER_BYTES + len) {
        this.skipped += at;
        this.buf = Buffer.from(this.buf.subarray(at));
        return undefined;
      }
      const whole = this.buf.subarray(at, at + HEADER_BYTES + len);
      const payload = whole.subarray(HEADER_BYTES);
      const frame: Frame = { type, stream: h.readUInt8(5), channel: 0, payload };
      if (frameCrc(whole, type, payload) === h.readUInt32LE(16) && this.matches(frame)) {
        this.skipped += at;
        return { frame, rest: this.buf.subarray(at + HEADER_BYTES + len) };
      }
      i = at + 1;
    }
  }
}

const MAGIC_BYTES = Buffer.from([0x4d, 0x43, 0x41, 0x31]);
