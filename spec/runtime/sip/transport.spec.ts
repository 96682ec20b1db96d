import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { UdpTransport } from '../../../runtime/sip/transport.ts';

const HOST = '127.0.0.1';
const PORT = 15079;

describe('UdpTransport', () => {
  it('open() binds the address, emits message with the sender, and send() reaches the peer', async () => {
    const t = await UdpTransport.open(HOST, PORT);
    const peer = dgram.createSocket('udp4');
    try {
      assert.deepEqual(t.address, { host: HOST, port: PORT });
      peer.bind(0, HOST);
      await once(peer, 'listening');
      const got = once(t, 'message');
      peer.send(Buffer.from('OPTIONS'), PORT, HOST);
      const [buf, from] = (await got) as [Buffer, { address: string; port: number }];
      assert.equal(buf.toString(), 'OPTIONS');
      assert.deepEqual(from, { address: HOST, port: peer.address().port });
      const reply = once(peer, 'message');
      t.send(Buffer.from('SIP/2.0 200 OK'), from);
      assert.equal(((await reply) as [Buffer])[0].toString(), 'SIP/2.0 200 OK');
    } finally {
      peer.close();
      await t.close();
    }
  });

  it('open() rejects with EADDRINUSE when the port is taken', async () => {
    const t = await UdpTransport.open(HOST, PORT);
    try {
      await assert.rejects(UdpTransport.open(HOST, PORT), /EADDRINUSE/);
    } finally {
      await t.close();
    }
  });

  it('close() is idempotent and send() after close() does not throw', async () => {
    const t = await UdpTransport.open(HOST, PORT);
    await t.close();
    await t.close();
    t.send(Buffer.from('x'), { address: HOST, port: 9 });
  });
});
