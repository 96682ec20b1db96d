/** SIP over UDP (RFC 3261 §18): one dgram socket, datagrams in, buffers out. */
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import type { Endpoint, Logger } from './transactions.ts';

/** Events of UdpTransport. */
export interface UdpTransportEvents {
  message: [buf: Buffer, from: Endpoint];
}

/** A bound UDP socket that never throws on send. */
export class UdpTransport extends EventEmitter<UdpTransportEvents> {
  readonly #socket: dgram.Socket;
  readonly #log: Logger | undefined;
  #closed = false;

  private constructor(socket: dgram.Socket, logger?: Logger) {
    super();
    this.#socket = socket;
    this.#log = logger;
    socket.on('message', (buf, rinfo) => this.emit('message', buf, { address: rinfo.address, port: rinfo.port }));
    socket.on('error', (err) => this.#log?.warn(`SIP socket error [${err.message}]`));
  }

  /** Bind a UDP socket; rejects if the address is taken. */
  static open(host: string, port: number, logger?: Logger): Promise<UdpTransport> {
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', reuseAddr: false });
      const onError = (err: Error): void => {
        socket.close();
        reject(err);
      };
      socket.once('error', onError);
      socket.bind(port, host, () => {
        socket.off('error', onError);
        resolve(new UdpTransport(socket, logger));
      });
    });
  }

  /** Where the socket is bound. */
  get address(): { host: string; port: number } {
    const a = this.#socket.address();
    return { host: a.address, port: a.port };
  }

  /** Send one datagram; errors are logged, not thrown (UDP is best effort). */
  send(buf: Buffer, to: Endpoint): void {
    if (this.#closed) return;
    this.#pending++;
    this.#socket.send(buf, to.port, to.address, (err) => {
      if (err) this.#log?.warn(`SIP send failed [to:${to.address}:${to.port} bytes:${buf.length} ${err.message}]`);
      if (--this.#pending === 0) this.#flushed?.();
    });
  }

  /** Datagrams handed to send() and not yet out. */
  #pending = 0;
  #flushed?: () => void;

  /** Close the socket once datagrams already sent are out (a last ACK or BYE is not lost); idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#pending > 0) {
      await new Promise<void>((resolve) => {
        this.#flushed = resolve;
        setTimeout(resolve, 200).unref();
      });
    }
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }
}
