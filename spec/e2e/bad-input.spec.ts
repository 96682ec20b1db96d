/**
 * Bad input gets a clear refusal and harms nothing: while a real call is live, the node is sent
 * malformed SIP, RTP from strangers, a caller keying a wrong PIN three times, broken JSON/XML,
 * forged and expired attendee tokens and unknown events — and the live call carries on.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMediaPlaylist } from '../../codecs/hls.ts';
import { signToken } from '../../codecs/token.ts';
import { serializeRtp } from '../../codecs/rtp.ts';
import { toneFrequency } from '../../codecs/tones.ts';
import { callPackets, tone, writePcap } from '../support/pcap.ts';
import { dialInScenario, runSipp } from '../support/sipp.ts';
import { SPEC_SECRET, startNodeProcess, waitFor, type NodeUnderTest } from '../support/node-process.ts';
import { decodeHls, segmentsListed } from '../support/hls-client.ts';

function sendUdp(port: number, payloads: Buffer[], fromPort = 0): Promise<void> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.bind(fromPort, '127.0.0.1', () => {
      let left = payloads.length;
      for (const p of payloads) {
        s.send(p, port, '127.0.0.1', () => {
          if (--left === 0) {
            s.close();
            resolve();
          }
        });
      }
    });
  });
}

describe('bad input while a call is live', { timeout: 180_000 }, () => {
  let node: NodeUnderTest;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-bad-'));

  before(async () => {
    node = await startNodeProcess({ httpPort: 28180, sipPort: 25160, rtpPorts: '26100-26149', encoderPorts: '27100-27149', env: { JITCAST_ARCHIVE_TIMEOUT_S: '2', JITCAST_RTP_SILENCE_TIMEOUT_S: '4' } });
  });
  after(async () => {
    await node?.stop();
  });

  test('malformed SIP, foreign RTP, three wrong PINs and bad HTTP input are refused; the live call is unharmed', async () => {
    const good = (await node.api('POST', '/api/events', { title: 'Good call' })).body;
    const other = (await node.api('POST', '/api/events', { title: 'Guessed' })).body;

    // The good call: 1 kHz tone for 40 s.
    const idKeys = `${good.eventId}#`;
    const pinAt = 1500 + idKeys.length * 200 + 400;
    const holdMs = 40_000; // long enough to outlast every check below, even on a loaded machine
    const goodPcap = join(work, 'good.pcap');
    writePcap(goodPcap, callPackets({ durationMs: holdMs, audio: tone(1000), keys: [{ atMs: 1500, digits: idKeys }, { atMs: pinAt, digits: `${good.pin}#` }], eventPt: 101 }));
    const goodCall = runSipp({ scenario: dialInScenario(work, 'good', { pcap: goodPcap, holdMs, ending: 'caller-bye' }), target: `127.0.0.1:${node.sipPort}`, localPort: 25180, mediaPort: 25190, cwd: work });

    const master = await waitFor('the good call live', async () => {
      const r = await fetch(`${good.attendeeUrl}/live.m3u8`);
      return r.status === 200 ? r.text() : undefined;
    }, 20_000);
    const variant = new URL(master.split('\n').find((l) => l.startsWith('/s/'))!, node.baseUrl).toString();

    // 1. Malformed SIP datagrams at the dial-in port.
    await sendUdp(node.sipPort, [
      Buffer.from('\x00\x01garbage\xff'),
      Buffer.from('INVITE sip:x@127.0.0.1 SIP/2.0\r\nCall-ID: no-via\r\n\r\n'),
      Buffer.from('OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKbad\r\nContent-Length: 9999\r\n\r\nshort'),
      Buffer.alloc(60_000, 0x41),
    ]);

    // 2. RTP from a stranger at the live call's port: it must not reach the conference.
    const cluster = (await node.api('GET', '/api/cluster')).body;
    const channel = cluster.voiceServers[0].channels.find((c: { eventId?: string }) => c.eventId === good.eventId);
    assert.ok(channel, 'the live call is listed with its port');
    const noise = Buffer.alloc(160, 0x00); // µ-law full-scale negative: loud if it got through
    await sendUdp(channel.port, Array.from({ length: 100 }, (_, i) => serializeRtp({ marker: false, payloadType: 0, sequenceNumber: i, timestamp: i * 160, ssrc: 0xbad, csrcs: [], paddingLength: 0, payload: noise })));
    await sendUdp(channel.port, [Buffer.from('not rtp at all'), Buffer.alloc(3)]);

    // 3. A caller who keys a wrong PIN three times hears goodbye and is hung up on.
    const wrong = other.pin === '000000' ? '111111' : '000000';
    const badPcap = join(work, 'bad.pcap');
    const ids = `${other.eventId}#`;
    writePcap(badPcap, callPackets({ durationMs: 14_000, audio: () => 0, keys: [{ atMs: 1500, digits: ids }, { atMs: 4000, digits: `${wrong}#` }, { atMs: 6500, digits: `${wrong}#` }, { atMs: 9000, digits: `${wrong}#` }], eventPt: 101 }));
    const badCall = await runSipp({ scenario: dialInScenario(work, 'bad', { pcap: badPcap, holdMs: 30_000, ending: 'expect-bye' }), target: `127.0.0.1:${node.sipPort}`, localPort: 25280, mediaPort: 25290, cwd: work });
    assert.equal(badCall.code, 0, `the wrong-PIN caller was not hung up on:\n${badCall.stdout}`);
    assert.equal((await node.api('GET', `/api/events/${other.eventId}`)).body.status, 'reserved', 'three wrong PINs never made the event live');

    // 4. HTTP: broken bodies, forged and expired tokens, unknown events.
    const badJson = await node.api('POST', '/api/events', '{"title": ', { 'Content-Type': 'application/json' });
    assert.equal(badJson.status, 400);
    assert.equal(badJson.body.error.code, 'MALFORMED_BODY');
    const badXml = await node.api('POST', '/api/events', '<event><title>x</event>', { 'Content-Type': 'application/xml' });
    assert.equal(badXml.status, 400);
    const bomb = await node.api('POST', '/api/events', '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><event><title>&a;</title></event>', { 'Content-Type': 'application/xml' });
    assert.equal(bomb.status, 400);
    const noTitle = await node.api('POST', '/api/events', { archiveDays: 0 });
    assert.equal(noTitle.status, 400);
    assert.ok(noTitle.body.error.fields.title && noTitle.body.error.fields.archiveDays, 'both bad fields are named');
    assert.equal((await node.api('GET', '/api/events/12345674')).status, 404);
    assert.equal((await node.api('GET', '/api/events/12345675')).status, 400, 'a bad check digit is refused before any lookup');
    const forged = signToken('another-secret-0123456789abcdefghijklmnop', { e: good.eventId, r: 'attendee' });
    assert.equal((await fetch(`${node.baseUrl}/e/${forged}/live.m3u8`)).status, 403);
    const expired = signToken(SPEC_SECRET, { e: good.eventId, r: 'attendee', x: 1_000_000 });
    assert.equal((await fetch(`${node.baseUrl}/e/${expired}/live.m3u8`)).status, 403);
    const forgedPage = await fetch(`${node.baseUrl}/e/${forged}`);
    assert.equal(forgedPage.status, 403);
    assert.match(await forgedPage.text(), /<html/i);
    assert.equal((await fetch(variant.replace(/a=[^&]+/, 'a=1.AAAA'))).status, 403, 'a forged auth code opens no stream');

    // The good call is still live, still carries its tone, and ends normally.
    const after1 = segmentsListed(await (await fetch(variant)).text());
    await new Promise((r) => setTimeout(r, 2500));
    const text2 = await (await fetch(variant)).text();
    const after2 = segmentsListed(text2);
    assert.ok(after2 > after1, `the live stream keeps growing (${after1} → ${after2} segments)`);
    const pcm = await decodeHls(variant, 2, Math.max(0, parseMediaPlaylist(text2).segments.length - 2));
    assert.ok(Math.abs(toneFrequency(pcm) - 1000) < 30, `still the caller's 1 kHz tone, not the stranger's noise (${toneFrequency(pcm)} Hz)`);
    const goodResult = await goodCall;
    assert.equal(goodResult.code, 0, `the good call failed:\n${goodResult.stdout}`);
    const stats = (await node.api('GET', '/api/cluster')).body;
    assert.ok(stats.nodes.length === 1, 'the node is still up');
  });

  test('a caller that goes silent (no RTP) is released after the silence timeout', async () => {
    const pcap = join(work, 'silent.pcap');
    writePcap(pcap, callPackets({ durationMs: 1000, audio: tone(1000), keys: [] }));
    const started = Date.now();
    const r = await runSipp({ scenario: dialInScenario(work, 'silent', { pcap, holdMs: 20_000, ending: 'expect-bye' }), target: `127.0.0.1:${node.sipPort}`, localPort: 25380, mediaPort: 25390, cwd: work });
    const heldS = (Date.now() - started) / 1000;
    assert.equal(r.code, 0, `jitcast did not hang up on the silent caller:\n${r.stdout}`);
    assert.ok(heldS >= 4, `released after ${heldS.toFixed(1)} s, not before the 4 s timeout`);
    assert.match(node.output(), /caller silent for 4 s: released/);
  });
});
