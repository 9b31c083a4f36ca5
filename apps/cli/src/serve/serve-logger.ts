import { mkdirSync, openSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'name', 'reqId', 'req', 'res', 'responseTime']);

/** One pino JSON record → `12:00:01 WARN worker: message key=value …` (pino-pretty is not installed). */
export function humanLine(json: string): string | undefined {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  // Fastify logs every request at info: keep those in the file, not on the terminal.
  if (rec.req !== undefined || rec.res !== undefined) return undefined;
  const time = new Date(typeof rec.time === 'number' ? rec.time : Date.now()).toISOString().slice(11, 19);
  const level = LEVELS[rec.level as number] ?? String(rec.level);
  const name = typeof rec.name === 'string' ? `${rec.name}: ` : '';
  const extras = Object.entries(rec)
    .filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => {
      if (k === 'err' && v && typeof v === 'object') return `error="${String((v as { message?: unknown }).message ?? '')}"`;
      const s = typeof v === 'string' ? v : JSON.stringify(v);
      return `${k}=${s && s.length > 80 ? `${s.slice(0, 77)}...` : s}`;
    });
  return `${time} ${level === 'info' ? '' : `${level} `}${name}${String(rec.msg ?? '')}${extras.length ? `  ${extras.join(' ')}` : ''}`;
}

/** serve.log is rotated at start once it is larger than this. */
export const SERVE_LOG_ROTATE_BYTES = 50 * 1024 * 1024;

/**
 * serve's logger: full JSON records (debug and up) to MONOCORE_HOME/log/serve.log,
 * concise human lines (info and up, no per-request noise) to stderr.
 */
export function createServeLogger(logDir: string, level: string): { logger: Logger; file: string } {
  mkdirSync(logDir, { recursive: true });
  const file = join(logDir, 'serve.log');
  // Rotation at start: a log past the limit becomes serve.log.1 (replacing the previous one).
  try {
    if (statSync(file).size > SERVE_LOG_ROTATE_BYTES) renameSync(file, `${file}.1`);
  } catch {
    // no log yet
  }
  const fileStream = pino.destination({ fd: openSync(file, 'a'), sync: false });
  const human = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        const text = humanLine(line);
        if (text !== undefined) process.stderr.write(`${text}\n`);
      }
      done();
    },
  });
  const logger = pino(
    { level: 'debug', base: { pid: process.pid } },
    pino.multistream([
      { stream: fileStream, level: 'debug' },
      { stream: human, level: level as pino.Level },
    ]),
  );
  return { logger, file };
}
