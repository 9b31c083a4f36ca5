/**
 * A TCP forwarder run as its own process (`node tcp-proxy.js HOST:PORT`), so a
 * test can cut one client off from a server while both stay healthy: SIGSTOP
 * freezes every connection through it (bytes sit in kernel buffers, nothing
 * is answered, nothing is closed) and SIGCONT heals the partition. Prints the
 * port it listens on (127.0.0.1) as its first line.
 */
import { connect, createServer, type AddressInfo } from 'node:net';

const target = process.argv[2] ?? '';
const m = /^(.+):(\d+)$/.exec(target);
if (!m) {
  process.stderr.write(`usage: tcp-proxy HOST:PORT (got "${target}")\n`);
  process.exit(2);
}
const [host, port] = [m[1]!, Number(m[2])];

const server = createServer((client) => {
  const upstream = connect(port, host);
  client.pipe(upstream);
  upstream.pipe(client);
  const end = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', end).on('close', end);
  upstream.on('error', end).on('close', end);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
});
