import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { negotiateAnswer, parseSdp, SdpNegotiationError, SdpParseError, serializeSdp, type LocalMedia } from '../../codecs/sdp.ts';

const sdp = (...lines: string[]): string => `${lines.join('\r\n')}\r\n`;
const LOCAL: LocalMedia = { address: '127.0.0.1', port: 16000, sessionId: '4711', version: 1 };

function negotiationFails(offer: string, code: string, local: LocalMedia = LOCAL): void {
  assert.throws(
    () => negotiateAnswer(offer, local),
    (e: unknown) => e instanceof SdpNegotiationError && e.code === code,
    `expected SdpNegotiationError ${code}`,
  );
}

/** The SDP of sipp's built-in uac scenario with -mi 127.0.0.1. */
const SIPP_OFFER = sdp(
  'v=0',
  'o=user1 53655765 2353687637 IN IP4 127.0.0.1',
  's=-',
  'c=IN IP4 127.0.0.1',
  't=0 0',
  'm=audio 6000 RTP/AVP 0',
  'a=rtpmap:0 PCMU/8000',
);

/** baresip's style: many codecs first, G.711 after, telephone-event 101. */
const BARESIP_OFFER = sdp(
  'v=0',
  'o=- 1967325434 2874416383 IN IP4 127.0.0.1',
  's=-',
  'c=IN IP4 127.0.0.1',
  't=0 0',
  'm=audio 10950 RTP/AVP 115 9 0 8 101',
  'b=AS:95',
  'a=rtpmap:115 opus/48000/2',
  'a=fmtp:115 stereo=1;sprop-stereo=1',
  'a=rtpmap:9 G722/8000',
  'a=rtpmap:0 PCMU/8000',
  'a=rtpmap:8 PCMA/8000',
  'a=rtpmap:101 telephone-event/8000',
  'a=fmtp:101 0-15',
  'a=sendrecv',
  'a=label:1',
  'a=rtcp-rsize',
  'a=ssrc:1588464024 cname:a5e7c3f1-6a1e-4f30-9b5c-e1c1e5d0b7ad',
);

/** Linphone's style: telephone-event at three clock rates, the 8 kHz one last. */
const LINPHONE_OFFER = sdp(
  'v=0',
  'o=linphone 3102 1870 IN IP4 192.168.1.20',
  's=Talk',
  'c=IN IP4 192.168.1.20',
  't=0 0',
  'a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics',
  'm=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100',
  'a=rtpmap:96 opus/48000/2',
  'a=fmtp:96 useinbandfec=1',
  'a=rtpmap:97 speex/16000',
  'a=fmtp:97 vbr=on',
  'a=rtpmap:98 speex/8000',
  'a=fmtp:98 vbr=on',
  'a=fmtp:18 annexb=yes',
  'a=rtpmap:101 telephone-event/48000',
  'a=rtpmap:99 telephone-event/16000',
  'a=rtpmap:100 telephone-event/8000',
  'a=rtcp-fb:* trr-int 5000',
  'a=rtcp-fb:* ccm tmmbr',
);

/** RFC 3264 §10.1 first offer (audio and video). */
const RFC3264_OFFER = sdp(
  'v=0',
  'o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com',
  's=',
  'c=IN IP4 host.atlanta.example.com',
  't=0 0',
  'm=audio 49170 RTP/AVP 0 8 97',
  'a=rtpmap:0 PCMU/8000',
  'a=rtpmap:8 PCMA/8000',
  'a=rtpmap:97 iLBC/8000',
  'm=video 51372 RTP/AVP 31 32',
  'a=rtpmap:31 H261/90000',
  'a=rtpmap:32 MPV/90000',
);

/** RFC 4566 §5 example session description. */
const RFC4566_EXAMPLE = sdp(
  'v=0',
  'o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5',
  's=SDP Seminar',
  'i=A Seminar on the session description protocol',
  'u=http://www.example.com/seminars/sdp.pdf',
  'e=j.doe@example.com (Jane Doe)',
  'c=IN IP4 224.2.17.12/127',
  't=2873397496 2873404696',
  'a=recvonly',
  'm=audio 49170 RTP/AVP 0',
  'm=video 51372 RTP/AVP 99',
  'a=rtpmap:99 h263-1998/90000',
);

describe('parseSdp() and serializeSdp()', () => {
  it('parseSdp() reads the RFC 4566 §5 example and serializeSdp() gives back the same text', () => {
    const s = parseSdp(RFC4566_EXAMPLE);
    assert.deepEqual(s.origin, {
      username: 'jdoe',
      sessionId: '2890844526',
      sessionVersion: '2890842807',
      netType: 'IN',
      addrType: 'IP4',
      address: '10.47.16.5',
    });
    assert.equal(s.sessionName, 'SDP Seminar');
    assert.equal(s.connection?.address, '224.2.17.12/127');
    assert.deepEqual(s.timing, [{ start: '2873397496', stop: '2873404696' }]);
    assert.deepEqual(s.attributes, [{ name: 'recvonly' }]);
    assert.equal(s.media.length, 2);
    assert.deepEqual(s.media[1], {
      media: 'video',
      port: 51372,
      protocol: 'RTP/AVP',
      formats: ['99'],
      attributes: [{ name: 'rtpmap', value: '99 h263-1998/90000' }],
      other: [],
    });
    assert.equal(serializeSdp(s), RFC4566_EXAMPLE);
  });

  it('serializeSdp(parseSdp()) round-trips the baresip and Linphone offers', () => {
    assert.equal(serializeSdp(parseSdp(BARESIP_OFFER)), BARESIP_OFFER);
    assert.equal(serializeSdp(parseSdp(LINPHONE_OFFER)), LINPHONE_OFFER);
  });

  it('parseSdp() accepts LF line ends', () => {
    assert.equal(parseSdp(SIPP_OFFER.replace(/\r\n/g, '\n')).media[0].port, 6000);
  });

  it('parseSdp() rejects text not starting with v=0 with SdpParseError BAD_VERSION', () => {
    assert.throws(() => parseSdp('o=x 1 1 IN IP4 1.2.3.4\r\n'), (e: unknown) => e instanceof SdpParseError && e.code === 'BAD_VERSION');
  });

  it('parseSdp() rejects a line without type= with SdpParseError BAD_LINE', () => {
    assert.throws(() => parseSdp(`${SIPP_OFFER}garbage\r\n`), (e: unknown) => e instanceof SdpParseError && e.code === 'BAD_LINE');
  });

  it('parseSdp() rejects a description without o= with SdpParseError MISSING_ORIGIN', () => {
    assert.throws(
      () => parseSdp(SIPP_OFFER.replace(/o=.*\r\n/, '')),
      (e: unknown) => e instanceof SdpParseError && e.code === 'MISSING_ORIGIN',
    );
  });

  it('parseSdp() rejects an m= section without any c= with SdpParseError MISSING_CONNECTION', () => {
    assert.throws(
      () => parseSdp(SIPP_OFFER.replace('c=IN IP4 127.0.0.1\r\n', '')),
      (e: unknown) => e instanceof SdpParseError && e.code === 'MISSING_CONNECTION',
    );
  });
});

describe('negotiateAnswer()', () => {
  it('negotiateAnswer() answers the sipp offer with PCMU and the exact expected SDP', () => {
    const n = negotiateAnswer(SIPP_OFFER, LOCAL);
    assert.equal(
      n.answer,
      sdp(
        'v=0',
        'o=jitcast 4711 1 IN IP4 127.0.0.1',
        's=jitcast',
        'c=IN IP4 127.0.0.1',
        't=0 0',
        'm=audio 16000 RTP/AVP 0',
        'a=rtpmap:0 PCMU/8000',
        'a=ptime:20',
        'a=sendrecv',
      ),
    );
    assert.deepEqual(n.codec, { name: 'PCMU', payloadType: 0 });
    assert.equal(n.telephoneEventPt, undefined);
    assert.deepEqual(n.telephoneEventPts, []);
    assert.deepEqual(n.remote, { address: '127.0.0.1', port: 6000 });
    assert.equal(n.direction, 'sendrecv');
    assert.equal(n.hold, false);
    assert.equal(n.ptimeMs, 20);
  });

  it('negotiateAnswer() picks PCMU from the baresip offer and echoes telephone-event 101 with its fmtp', () => {
    const n = negotiateAnswer(BARESIP_OFFER, { ...LOCAL, version: 2 });
    assert.deepEqual(n.codec, { name: 'PCMU', payloadType: 0 });
    assert.equal(n.telephoneEventPt, 101);
    assert.deepEqual(n.telephoneEventPts, [101]);
    assert.deepEqual(n.remote, { address: '127.0.0.1', port: 10950 });
    assert.equal(
      n.answer,
      sdp(
        'v=0',
        'o=jitcast 4711 2 IN IP4 127.0.0.1',
        's=jitcast',
        'c=IN IP4 127.0.0.1',
        't=0 0',
        'm=audio 16000 RTP/AVP 0 101',
        'a=rtpmap:0 PCMU/8000',
        'a=rtpmap:101 telephone-event/8000',
        'a=fmtp:101 0-15',
        'a=ptime:20',
        'a=sendrecv',
      ),
    );
  });

  it('negotiateAnswer() takes only the 8 kHz telephone-event of the Linphone offer', () => {
    const n = negotiateAnswer(LINPHONE_OFFER, LOCAL);
    assert.deepEqual(n.codec, { name: 'PCMU', payloadType: 0 });
    assert.deepEqual(n.telephoneEventPts, [100]);
    assert.deepEqual(n.remote, { address: '192.168.1.20', port: 7078 });
    assert.match(n.answer, /^m=audio 16000 RTP\/AVP 0 100\r\n/m);
    assert.doesNotMatch(n.answer, /fmtp/);
  });

  it('negotiateAnswer() answers a PCMA-only offer with PCMA 8', () => {
    const offer = SIPP_OFFER.replace('RTP/AVP 0', 'RTP/AVP 8').replace('a=rtpmap:0 PCMU/8000', 'a=rtpmap:8 PCMA/8000');
    const n = negotiateAnswer(offer, LOCAL);
    assert.deepEqual(n.codec, { name: 'PCMA', payloadType: 8 });
    assert.match(n.answer, /^m=audio 16000 RTP\/AVP 8\r\na=rtpmap:8 PCMA\/8000\r\n/m);
  });

  it('negotiateAnswer() follows the offer order (8 before 0 gives PCMA) and honours local.codecs', () => {
    const pcmaFirst = SIPP_OFFER.replace('RTP/AVP 0', 'RTP/AVP 8 0');
    assert.equal(negotiateAnswer(pcmaFirst, LOCAL).codec.name, 'PCMA');
    const both = SIPP_OFFER.replace('RTP/AVP 0', 'RTP/AVP 0 8');
    assert.deepEqual(negotiateAnswer(both, { ...LOCAL, codecs: ['PCMA'] }).codec, { name: 'PCMA', payloadType: 8 });
  });

  it('negotiateAnswer() accepts PCMU on a dynamic payload type declared by rtpmap', () => {
    const offer = SIPP_OFFER.replace('RTP/AVP 0', 'RTP/AVP 97').replace('a=rtpmap:0 PCMU/8000', 'a=rtpmap:97 pcmu/8000');
    assert.deepEqual(negotiateAnswer(offer, LOCAL).codec, { name: 'PCMU', payloadType: 97 });
  });

  it('negotiateAnswer() accepts telephone-event on both 96 and 101 and reports 96 first', () => {
    const offer = SIPP_OFFER.replace('RTP/AVP 0', 'RTP/AVP 0 96 101').replace(
      'a=rtpmap:0 PCMU/8000',
      'a=rtpmap:0 PCMU/8000\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16',
    );
    const n = negotiateAnswer(offer, LOCAL);
    assert.equal(n.telephoneEventPt, 96);
    assert.deepEqual(n.telephoneEventPts, [96, 101]);
    assert.match(n.answer, /m=audio 16000 RTP\/AVP 0 96 101\r\n/);
    assert.match(n.answer, /a=fmtp:96 0-16\r\n[^]*a=fmtp:101 0-16\r\n/);
  });

  it('negotiateAnswer() rejects the RFC 3264 video stream with port 0 and keeps its formats', () => {
    const n = negotiateAnswer(RFC3264_OFFER, LOCAL);
    assert.deepEqual(n.codec, { name: 'PCMU', payloadType: 0 });
    assert.deepEqual(n.remote, { address: 'host.atlanta.example.com', port: 49170 });
    const answer = parseSdp(n.answer);
    assert.equal(answer.media.length, 2);
    assert.deepEqual(answer.media[1], { media: 'video', port: 0, protocol: 'RTP/AVP', formats: ['31', '32'], attributes: [], other: [] });
  });

  it('negotiateAnswer() answers a hold re-INVITE (a=sendonly) with recvonly', () => {
    const n = negotiateAnswer(SIPP_OFFER.replace('a=rtpmap:0 PCMU/8000', 'a=rtpmap:0 PCMU/8000\r\na=sendonly'), { ...LOCAL, version: 2 });
    assert.equal(n.direction, 'recvonly');
    assert.equal(n.offerDirection, 'sendonly');
    assert.equal(n.hold, true);
    assert.match(n.answer, /^o=jitcast 4711 2 /m);
    assert.match(n.answer, /\r\na=recvonly\r\n$/);
  });

  it('negotiateAnswer() treats c=0.0.0.0 as hold (RFC 3264 §8.4) and a=inactive as inactive', () => {
    const nulled = negotiateAnswer(SIPP_OFFER.replace('c=IN IP4 127.0.0.1', 'c=IN IP4 0.0.0.0'), LOCAL);
    assert.equal(nulled.direction, 'recvonly');
    assert.equal(nulled.hold, true);
    const inactive = negotiateAnswer(`${SIPP_OFFER}a=inactive\r\n`, LOCAL);
    assert.equal(inactive.direction, 'inactive');
    assert.equal(inactive.hold, true);
  });

  it('negotiateAnswer() answers a recvonly offer with sendonly and takes the media-level c= over the session one', () => {
    const offer = SIPP_OFFER.replace('a=rtpmap:0 PCMU/8000', 'c=IN IP4 192.0.2.7\r\na=rtpmap:0 PCMU/8000\r\na=recvonly\r\na=ptime:30');
    const n = negotiateAnswer(offer, LOCAL);
    assert.equal(n.direction, 'sendonly');
    assert.equal(n.hold, false);
    assert.deepEqual(n.remote, { address: '192.0.2.7', port: 6000 });
    assert.equal(n.ptimeMs, 30);
    assert.match(n.answer, /a=ptime:30\r\n/);
  });

  it('negotiateAnswer() throws SdpNegotiationError NO_COMMON_CODEC for a G.722/G.729 offer', () => {
    negotiationFails(SIPP_OFFER.replace('RTP/AVP 0', 'RTP/AVP 9 18').replace('a=rtpmap:0 PCMU/8000', 'a=rtpmap:9 G722/8000'), 'NO_COMMON_CODEC');
  });

  it('negotiateAnswer() throws NO_COMMON_CODEC when the offer has PCMU but local.codecs only PCMA', () => {
    negotiationFails(SIPP_OFFER, 'NO_COMMON_CODEC', { ...LOCAL, codecs: ['PCMA'] });
  });

  it('negotiateAnswer() throws SdpNegotiationError NO_ACTIVE_AUDIO when the audio m= line has port 0', () => {
    negotiationFails(SIPP_OFFER.replace('m=audio 6000', 'm=audio 0'), 'NO_ACTIVE_AUDIO');
  });

  it('negotiateAnswer() throws SdpNegotiationError NO_AUDIO for a video-only offer', () => {
    negotiationFails(SIPP_OFFER.replace('m=audio 6000 RTP/AVP 0', 'm=video 6000 RTP/AVP 31').replace('a=rtpmap:0 PCMU/8000', 'a=rtpmap:31 H261/90000'), 'NO_AUDIO');
  });

  it('negotiateAnswer() throws SdpParseError when the offer has no c= line', () => {
    assert.throws(() => negotiateAnswer(SIPP_OFFER.replace('c=IN IP4 127.0.0.1\r\n', ''), LOCAL), SdpParseError);
  });
});
