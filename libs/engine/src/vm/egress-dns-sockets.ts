/**
 * Run by EgressNetwork as `ip netns exec mcegress-N node egress-dns-sockets.js`
 * with an IPC channel: binds the allow-list resolver's UDP and TCP sockets on
 * 127.0.0.1:53 inside the egress namespace, hands both to the parent (Node's
 * IPC passes the file descriptors) and exits. The parent serves DNS on them
 * without a process of its own per VM, and without any port on the host.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';

const fail = (err: Error): never => {
  process.stderr.write(`egress-dns-sockets: ${err.message}\n`);
  process.exit(1);
};
if (!process.send) fail(new Error('needs an IPC channel'));
const udp = createSocket('udp4');
udp.once('error', fail);
udp.bind(53, '127.0.0.1', () => {
  const tcp = createServer();
  tcp.once('error', fail);
  tcp.listen(53, '127.0.0.1', () => {
    process.send!('udp', udp, (e: Error | null) => {
      if (e) fail(e);
      process.send!('tcp', tcp, (e2: Error | null) => {
        if (e2) fail(e2);
        udp.close();
        tcp.close();
        process.disconnect();
      });
    });
  });
});
