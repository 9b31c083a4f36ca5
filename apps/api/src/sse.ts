import type { FastifyReply } from 'fastify';
import { writeOrWait } from '@monocore/engine/write-or-wait';

/**
 * A Server-Sent Events stream on a hijacked reply. Fastify no longer touches
 * the response after hijack(), so this writes the head itself, respects
 * backpressure, sends a comment every `heartbeatMs` (keeps proxies and idle
 * timeouts from closing the stream) and aborts `signal` when the client leaves.
 */
export class SseStream {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private readonly heartbeat: NodeJS.Timeout;

  constructor(private readonly reply: FastifyReply, heartbeatMs = 15_000) {
    this.signal = this.controller.signal;
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    raw.write(': monocore event stream\n\n');
    raw.on('close', () => this.controller.abort());
    this.heartbeat = setInterval(() => void this.write(': keep-alive\n\n'), heartbeatMs);
    this.heartbeat.unref();
  }

  /** Sends one event; `data` is JSON-encoded (one line, so no `data:` splitting is needed). */
  async send(event: string, data: unknown, id?: string): Promise<void> {
    const head = `${id ? `id: ${id.replace(/[\r\n]/g, '')}\n` : ''}event: ${event}\n`;
    await this.write(`${head}data: ${JSON.stringify(data)}\n\n`);
  }

  /** Sends raw text as data lines (log output), one `data:` line per line of text. */
  async sendText(event: string, text: string): Promise<void> {
    const lines = text.replace(/\n$/, '').split('\n');
    await this.write(`event: ${event}\n${lines.map((l) => `data: ${l}`).join('\n')}\n\n`);
  }

  private async write(chunk: string): Promise<void> {
    const raw = this.reply.raw;
    if (raw.destroyed || raw.writableEnded) return;
    await writeOrWait(raw, chunk);
  }

  end(): void {
    clearInterval(this.heartbeat);
    if (!this.reply.raw.writableEnded) this.reply.raw.end();
    this.controller.abort();
  }
}
