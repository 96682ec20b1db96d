/** UDP sockets for RTP: bound before use, and never a crash on a stray socket error. */
import { createSocket, type Socket } from 'node:dgram';

/**
 * Binds a UDP/IPv4 socket to `host:port` (0: any free port); rejects when the port is taken.
 * Once bound, socket errors (ICMP port unreachable after a send, mostly) are swallowed: UDP is best
 * effort, and one peer gone away must not take the process down.
 */
export function bindUdp(host: string, port = 0): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(port, host, () => {
      s.off('error', reject);
      s.on('error', () => {});
      resolve(s);
    });
  });
}
