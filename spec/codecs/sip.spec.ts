import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  makeResponse,
  MAX_SIP_MESSAGE_BYTES,
  parseCSeq,
  parseNameAddr,
  parseSip,
  parseVia,
  salvageSip,
  serializeSip,
  SipHeaders,
  SipParseError,
  splitList,
  tagOf,
  type SipRequest,
  type SipResponse,
} from '../../codecs/sip.ts';

const crlf = (...lines: string[]): Buffer => Buffer.from(lines.join('\r\n'), 'utf8');
const latin1 = (...lines: string[]): Buffer => Buffer.from(lines.join('\r\n'), 'latin1');

function parseRequest(buf: Buffer): SipRequest {
  const m = parseSip(buf);
  assert.equal(m.kind, 'request');
  return m as SipRequest;
}

function throwsCode(buf: Buffer, code: string): void {
  assert.throws(
    () => parseSip(buf),
    (err: unknown) => err instanceof SipParseError && err.code === code,
    `expected SipParseError ${code}`,
  );
}

const SDP_150 = [
  'v=0',
  'o=mhandley 29739 7272939 IN IP4 192.0.2.3',
  's=-',
  'c=IN IP4 192.0.2.4',
  't=0 0',
  'm=audio 49217 RTP/AVP 0 12',
  'm=video 3227 RTP/AVP 31',
  'a=rtpmap:31 LPC',
  '',
];

/** RFC 4475 §3.1.1.1 "A Short Tortuous INVITE" (wsinv). */
const WSINV = crlf(
  'INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0',
  'TO :',
  ' sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n',
  'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>',
  '  ;',
  '  tag = 98asjd8',
  'MaX-fOrWaRdS: 0068',
  'Call-ID: wsinv.ndaksdj@192.0.2.1',
  'Content-Length   : 150',
  'cseq: 0009',
  '  INVITE',
  'Via  : SIP  /   2.0',
  ' /UDP',
  '    192.0.2.2;branch=390skdjuw',
  's :',
  'NewFangledHeader:   newfangled value',
  ' continued newfangled value',
  'UnknownHeaderWithUnusualValue: ;;,,;;,;',
  'Content-Type: application/sdp',
  'Route:',
  ' <sip:services.example.com;lr;unknownwith=value;unknown-no-value>',
  'v:  SIP  / 2.0  / TCP     spindle.example.com   ;',
  '  branch  =   z9hG4bK9ikj8  ,',
  ' SIP  /    2.0   / UDP  192.168.255.111   ; branch=',
  ' z9hG4bK30239',
  'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =',
  '      newvalue ;',
  '  secondparam ; q = 0.33',
  '',
  ...SDP_150,
);

/** RFC 4475 §3.1.1.2 "Wide Range of Valid Characters" (intmeth). */
const INTMETH = Buffer.concat([
  latin1(
    "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0",
    "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
    "To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>",
    '',
  ),
  Buffer.from(
    "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"работающий\";tag=_token~1'+`*%!-.\r\n",
    'utf8',
  ),
  latin1(
    "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
    "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~",
    'Max-Forwards: 255',
    '',
  ),
  Buffer.from("extensionHeader-!.%*+_`'~:\ufeff大停電\r\nContent-Length: 0\r\n\r\n", 'utf8'),
]);

/** RFC 4475 §3.1.1.4 "Escaped Nulls in URIs" (escnull). */
const ESCNULL = crlf(
  'REGISTER sip:example.com SIP/2.0',
  'To: sip:null-%00-null@example.com',
  'From: sip:null-%00-null@example.com;tag=839923423',
  'Max-Forwards: 70',
  'Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd',
  'CSeq: 14398234 REGISTER',
  'Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw',
  'Contact: <sip:%00@host5.example.com>',
  'Contact: <sip:%00%00@host5.example.com>',
  'L:0',
  '',
  '',
);

/** RFC 4475 §3.1.1.6 "Message with No LWS between Display Name and <" (lwsdisp). */
const LWSDISP = crlf(
  'OPTIONS sip:user@example.com SIP/2.0',
  'To: sip:user@example.com',
  'From: caller<sip:caller@example.com>;tag=323',
  'Max-Forwards: 70',
  'Call-ID: lwsdisp.1234abcd@funky.example.com',
  'CSeq: 60 OPTIONS',
  'Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw',
  'l: 0',
  '',
  '',
);

/** RFC 4475 §3.1.1.8 "Extra Trailing Octets in a UDP Datagram" (dblreq). */
const DBLREQ = crlf(
  'REGISTER sip:example.com SIP/2.0',
  'To: sip:j.user@example.com',
  'From: sip:j.user@example.com;tag=43251j3j324',
  'Max-Forwards: 8',
  'I: dblreq.0ha0isndaksdj99sdfafnl3lk233412',
  'Contact: sip:j.user@host.example.com',
  'CSeq: 8 REGISTER',
  'Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492',
  'Content-Length: 0',
  '',
  'INVITE sip:joe@example.com SIP/2.0',
  't: sip:joe@example.com',
  'From: sip:caller@example.net;tag=141334',
  'Max-Forwards: 8',
  'Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15',
  'CSeq: 8 INVITE',
  'Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234',
  'Content-Type: application/sdp',
  'Content-Length: 150',
  '',
  ...SDP_150,
);

const SDP_152 = [
  'v=0',
  'o=mhandley 29739 7272939 IN IP4 192.0.2.15',
  's=-',
  'c=IN IP4 192.0.2.15',
  't=0 0',
  'm=audio 49217 RTP/AVP 0 12',
  'm=video 3227 RTP/AVP 31',
  'a=rtpmap:31 LPC',
  '',
];

/** RFC 4475 §3.1.2.1 "Extraneous Header Field Separators" (badinv01). */
const BADINV01 = crlf(
  'INVITE sip:user@example.com SIP/2.0',
  'To: sip:j.user@example.com',
  'From: sip:caller@example.net;tag=134161461246',
  'Max-Forwards: 7',
  'Call-ID: badinv01.0ha0isndaksdjasdf3234nas',
  'CSeq: 8 INVITE',
  'Via: SIP/2.0/UDP 192.0.2.15;;,;,,',
  'Contact: "Joe" <sip:joe@example.org>;;;;',
  'Content-Length: 152',
  'Content-Type: application/sdp',
  '',
  ...SDP_152,
);

/** RFC 4475 §3.1.2.2 "Content Length Larger Than Message" (clerr). */
const CLERR = crlf(
  'INVITE sip:user@example.com SIP/2.0',
  'Max-Forwards: 80',
  'To: sip:j.user@example.com',
  'From: sip:caller@example.net;tag=93942939o2',
  'Contact: <sip:caller@hungry.example.net>',
  'Call-ID: clerr.0ha0isndaksdjweiafasdk3',
  'CSeq: 8 INVITE',
  'Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523',
  'Content-Type: application/sdp',
  'Content-Length: 9999',
  '',
  'v=0',
  'o=mhandley 29739 7272939 IN IP4 192.0.2.155',
  's=-',
  'c=IN IP4 192.0.2.155',
  't=0 0',
  'm=audio 49217 RTP/AVP 0 12',
  'm=video 3227 RTP/AVP 31',
  'a=rtpmap:31 LPC',
  '',
);

/** RFC 4475 §3.1.2.3 "Negative Content-Length" (ncl). */
const NCL = crlf(
  'INVITE sip:user@example.com SIP/2.0',
  'Max-Forwards: 254',
  'To: sip:j.user@example.com',
  'From: sip:caller@example.net;tag=32394234',
  'Call-ID: ncl.0ha0isndaksdj2193423r542w35',
  'CSeq: 0 INVITE',
  'Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw',
  'Contact: <sip:caller@example53.example.net>',
  'Content-Type: application/sdp',
  'Content-Length: -999',
  '',
  ...SDP_150,
);

/** RFC 4475 §3.1.2.4 "Request Scalar Fields with Overlarge Values" (scalar02). */
const SCALAR02 = crlf(
  'REGISTER sip:example.com SIP/2.0',
  'Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3',
  'To: <sip:user@example.com>',
  'From: <sip:user@example.com>;tag=239232jh3',
  'CSeq: 36893488147419103232 REGISTER',
  'Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32',
  'Max-Forwards: 300',
  'Expires: 1000000000000000000000000000000000000000000',
  'Contact: <sip:user@host129.example.com>',
  '  ;expires=280297596632815',
  'Content-Length: 0',
  '',
  '',
);

/** RFC 4475 §3.1.2.13 "Method Mismatch" (mismatch01). */
const MISMATCH01 = crlf(
  'OPTIONS sip:user@example.com SIP/2.0',
  'To: sip:j.user@example.com',
  'From: sip:caller@example.net;tag=34525',
  'Max-Forwards: 6',
  'Call-ID: mismatch01.dj0234sxdfl3',
  'CSeq: 8 INVITE',
  'Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw',
  'l: 0',
  '',
  '',
);

/** RFC 4475 §3.1.2.16 "Unknown Protocol Version" (badvers). */
const BADVERS = crlf(
  'OPTIONS sip:t.watson@example.org SIP/7.0',
  'Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw',
  'Max-Forwards:     70',
  'From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe',
  'To:      T. Watson <sip:t.watson@example.org>',
  'Call-ID: badvers.31417@c.example.com',
  'CSeq:    1 OPTIONS',
  'l: 0',
  '',
  '',
);

/** RFC 4475 §3.1.2.10 "Request-URI with Embedded LWS" (lwsruri). */
const LWSRURI = crlf(
  'INVITE sip:user@example.com; lr SIP/2.0',
  'To: sip:user@example.com;tag=3xfe-9921883-z9f',
  'From: sip:caller@example.net;tag=231413434',
  'Max-Forwards: 5',
  'Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423',
  'CSeq: 2130706432 INVITE',
  'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395',
  'Contact: <sip:caller@host1.example.net>',
  'l: 0',
  '',
  '',
);

/** RFC 4475 §3.1.2.? "insuf": a request missing Call-ID, From, To and Max-Forwards. */
const INSUF = crlf(
  'INVITE sip:user@example.com SIP/2.0',
  'CSeq: 193942 INVITE',
  'Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf',
  'Content-Type: application/sdp',
  'l: 150',
  '',
  ...SDP_150,
);

const BASIC_SDP = [
  'v=0',
  'o=bob 2890844526 2890844526 IN IP4 client.biloxi.example.com',
  's=-',
  'c=IN IP4 192.0.2.101',
  't=0 0',
  'm=audio 49172 RTP/AVP 0',
  'a=rtpmap:0 PCMU/8000',
  '',
];

/** A basic INVITE laid out as RFC 3665 §2.1 F1 (UDP instead of TCP). */
const INVITE_F1 = crlf(
  'INVITE sip:alice@client.atlanta.example.com SIP/2.0',
  'Via: SIP/2.0/UDP client.biloxi.example.com:5060;branch=z9hG4bK74bf9',
  'Max-Forwards: 70',
  'From: Bob <sip:bob@biloxi.example.com>;tag=8321234356',
  'To: Alice <sip:alice@atlanta.example.com>',
  'Call-ID: 3848276298220188511@atlanta.example.com',
  'CSeq: 1 INVITE',
  'Contact: <sip:bob@client.biloxi.example.com>',
  'Content-Type: application/sdp',
  'Content-Length: 148',
  '',
  ...BASIC_SDP,
);

const OK_F4 = crlf(
  'SIP/2.0 200 OK',
  'Via: SIP/2.0/UDP client.biloxi.example.com:5060;branch=z9hG4bK74bf9;received=192.0.2.101',
  'From: Bob <sip:bob@biloxi.example.com>;tag=8321234356',
  'To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl',
  'Call-ID: 3848276298220188511@atlanta.example.com',
  'CSeq: 1 INVITE',
  'Contact: <sip:alice@client.atlanta.example.com>',
  'Content-Length: 0',
  '',
  '',
);

const ACK_F5 = crlf(
  'ACK sip:alice@client.atlanta.example.com SIP/2.0',
  'Via: SIP/2.0/UDP client.biloxi.example.com:5060;branch=z9hG4bK74bd5',
  'Max-Forwards: 70',
  'From: Bob <sip:bob@biloxi.example.com>;tag=8321234356',
  'To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl',
  'Call-ID: 3848276298220188511@atlanta.example.com',
  'CSeq: 1 ACK',
  'Content-Length: 0',
  '',
  '',
);

const BYE_F6 = crlf(
  'BYE sip:alice@client.atlanta.example.com SIP/2.0',
  'Via: SIP/2.0/UDP client.biloxi.example.com:5060;branch=z9hG4bK74b43',
  'Max-Forwards: 70',
  'From: Bob <sip:bob@biloxi.example.com>;tag=8321234356',
  'To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl',
  'Call-ID: 3848276298220188511@atlanta.example.com',
  'CSeq: 2 BYE',
  'Content-Length: 0',
  '',
  '',
);

describe('parseSip() on RFC 4475 valid messages', () => {
  it('parseSip() reads wsinv (A Short Tortuous INVITE): folding, odd case, LWS and compact forms', () => {
    const m = parseRequest(WSINV);
    assert.equal(m.method, 'INVITE');
    assert.equal(m.uri, 'sip:vivekg@chair-dnrc.example.com;unknownparam');
    const h = m.headers;
    assert.equal(tagOf(h.get('to')), '1918181833n');
    const from = parseNameAddr(h.get('From')!);
    assert.equal(from.displayName, 'J Rosenberg \\"');
    assert.equal(from.uri, 'sip:jdrosen@example.com');
    assert.equal(from.params.tag, '98asjd8');
    assert.equal(h.get('Max-Forwards'), '0068');
    assert.deepEqual(parseCSeq(h.get('CSeq')!), { seq: 9, method: 'INVITE' });
    const vias = h.getAll('Via').map(parseVia);
    assert.equal(vias.length, 3);
    assert.deepEqual(vias[0], { protocol: 'SIP/2.0', transport: 'UDP', host: '192.0.2.2', params: { branch: '390skdjuw' } });
    assert.deepEqual(vias[1], { protocol: 'SIP/2.0', transport: 'TCP', host: 'spindle.example.com', params: { branch: 'z9hG4bK9ikj8' } });
    assert.deepEqual(vias[2], { protocol: 'SIP/2.0', transport: 'UDP', host: '192.168.255.111', params: { branch: 'z9hG4bK30239' } });
    assert.equal(h.get('Subject'), '');
    assert.equal(h.get('NewFangledHeader'), 'newfangled value continued newfangled value');
    assert.equal(h.get('UnknownHeaderWithUnusualValue'), ';;,,;;,;');
    assert.deepEqual(h.getAll('Route'), ['<sip:services.example.com;lr;unknownwith=value;unknown-no-value>']);
    const contact = parseNameAddr(h.get('Contact')!);
    assert.deepEqual(contact, {
      displayName: 'Quoted string ""',
      uri: 'sip:jdrosen@example.com',
      params: { newparam: 'newvalue', secondparam: true, q: '0.33' },
    });
    assert.equal(Buffer.byteLength(m.body), 150);
    assert.ok(m.body.startsWith('v=0\r\no=mhandley'));
  });

  it('parseSip() reads intmeth: token characters in the method, control characters in a quoted display name, UTF-8 values', () => {
    const m = parseRequest(INTMETH);
    assert.equal(m.method, "!interesting-Method0123456789_*+`.%indeed'~");
    assert.equal(m.uri, "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
    assert.deepEqual(parseCSeq(m.headers.get('CSeq')!), { seq: 139122385, method: m.method });
    assert.equal(parseNameAddr(m.headers.get('To')!).displayName, 'BEL:\x07 NUL:\x00 DEL:\x7f');
    const from = parseNameAddr(m.headers.get('From')!);
    assert.equal(from.displayName, "token1~` token2'+_ token3*%!.-");
    assert.equal(from.params["fromparam''~+*_!.-%"], '"работающий"');
    assert.equal(from.params.tag, "_token~1'+`*%!-.");
    assert.equal(m.headers.get('Call-ID'), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert.equal(m.headers.get("extensionHeader-!.%*+_`'~"), '\ufeff大停電');
    assert.equal(m.body, '');
  });

  it('parseSip() reads escnull: %00 in URIs, two Contact lines and the compact L: form', () => {
    const m = parseRequest(ESCNULL);
    assert.equal(m.method, 'REGISTER');
    assert.deepEqual(m.headers.getAll('contact'), ['<sip:%00@host5.example.com>', '<sip:%00%00@host5.example.com>']);
    assert.equal(m.headers.get('Content-Length'), '0');
    assert.equal(parseNameAddr(m.headers.get('To')!).uri, 'sip:null-%00-null@example.com');
  });

  it('parseSip() reads lwsdisp: a display name followed by < without whitespace', () => {
    const m = parseRequest(LWSDISP);
    assert.deepEqual(parseNameAddr(m.headers.get('From')!), { displayName: 'caller', uri: 'sip:caller@example.com', params: { tag: '323' } });
  });

  it('parseSip() reads dblreq: octets after Content-Length are ignored (RFC 3261 §18.3)', () => {
    const m = parseRequest(DBLREQ);
    assert.equal(m.method, 'REGISTER');
    assert.equal(m.body, '');
    assert.equal(m.headers.get('Call-ID'), 'dblreq.0ha0isndaksdj99sdfafnl3lk233412');
  });

  it('parseSip() expands every compact header form (v f t i m l c k s e)', () => {
    const m = parseRequest(
      crlf(
        'INVITE sip:bob@example.com SIP/2.0',
        'v: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKnashds8',
        'f: <sip:alice@example.com>;tag=1928301774',
        't: <sip:bob@example.com>',
        'i: a84b4c76e66710',
        'CSeq: 314159 INVITE',
        'm: <sip:alice@pc33.example.com>',
        'k: timer',
        's: compact',
        'e: identity',
        'c: application/sdp',
        'l: 4',
        '',
        'abcd',
      ),
    );
    const names = [...m.headers].map(([n]) => n);
    assert.deepEqual(names, ['Via', 'From', 'To', 'Call-ID', 'CSeq', 'Contact', 'Supported', 'Subject', 'Content-Encoding', 'Content-Type', 'Content-Length']);
    assert.equal(m.body, 'abcd');
  });
});

describe('parseSip() on RFC 4475 invalid messages', () => {
  it('parseSip() rejects badinv01 (empty Via elements and parameters) with SipParseError BAD_VIA', () => throwsCode(BADINV01, 'BAD_VIA'));
  it('parseSip() rejects clerr (Content-Length 9999 beyond the datagram) with SipParseError BODY_TRUNCATED', () =>
    throwsCode(CLERR, 'BODY_TRUNCATED'));
  it('parseSip() rejects ncl (Content-Length -999) with SipParseError BAD_CONTENT_LENGTH', () => throwsCode(NCL, 'BAD_CONTENT_LENGTH'));
  it('parseSip() rejects scalar02 (CSeq 36893488147419103232) with SipParseError BAD_CSEQ', () => throwsCode(SCALAR02, 'BAD_CSEQ'));
  it('parseSip() rejects scalar02 with a sane CSeq for its Max-Forwards of 300 with BAD_MAX_FORWARDS', () =>
    throwsCode(Buffer.from(SCALAR02.toString().replace('36893488147419103232', '1')), 'BAD_MAX_FORWARDS'));
  it('parseSip() rejects mismatch01 (CSeq method INVITE on OPTIONS) with SipParseError CSEQ_MISMATCH', () =>
    throwsCode(MISMATCH01, 'CSEQ_MISMATCH'));
  it('parseSip() rejects badvers (SIP/7.0) with SipParseError BAD_VERSION', () => throwsCode(BADVERS, 'BAD_VERSION'));
  it('parseSip() rejects lwsruri (whitespace inside the Request-URI) with SipParseError BAD_START_LINE', () =>
    throwsCode(LWSRURI, 'BAD_START_LINE'));
  it('parseSip() rejects insuf (no Call-ID, From, To) with SipParseError MISSING_HEADER', () => throwsCode(INSUF, 'MISSING_HEADER'));
});

describe('parseSip() framing and limits', () => {
  it('parseSip() rejects a request without Via with SipParseError MISSING_HEADER', () => {
    throwsCode(Buffer.from(INVITE_F1.toString().replace(/^Via:.*\r\n/m, '')), 'MISSING_HEADER');
  });
  it('parseSip() accepts a request without Max-Forwards', () => {
    assert.equal(parseRequest(Buffer.from(ACK_F5.toString().replace(/^Max-Forwards:.*\r\n/m, ''))).method, 'ACK');
  });
  it('parseSip() rejects headers that never end with CRLF CRLF with NO_HEADER_END', () => {
    throwsCode(crlf('OPTIONS sip:a@b SIP/2.0', 'Via: SIP/2.0/UDP h;branch=z9hG4bK1'), 'NO_HEADER_END');
  });
  it('parseSip() rejects a 70 KB message with TOO_LARGE', () => {
    const big = Buffer.concat([INVITE_F1, Buffer.alloc(70 * 1024, 0x61)]);
    assert.ok(big.length > MAX_SIP_MESSAGE_BYTES);
    throwsCode(big, 'TOO_LARGE');
  });
  it('parseSip() rejects garbage bytes with SipParseError', () => {
    assert.throws(() => parseSip(Buffer.from([0x00, 0xff, 0x13, 0x37, 0x0d, 0x0a, 0x0d, 0x0a])), SipParseError);
  });
  it('parseSip() rejects a continuation line before any header with BAD_HEADER', () => {
    throwsCode(crlf('OPTIONS sip:a@b SIP/2.0', ' folded', '', ''), 'BAD_HEADER');
  });
  it('parseSip() rejects two Call-ID headers with DUPLICATE_HEADER', () => {
    throwsCode(Buffer.from(BYE_F6.toString().replace('CSeq: 2 BYE', 'CSeq: 2 BYE\r\nCall-ID: other')), 'DUPLICATE_HEADER');
  });
  it('parseSip() takes the body to the end of the datagram when Content-Length is absent (§18.3)', () => {
    const m = parseSip(Buffer.from(INVITE_F1.toString().replace('Content-Length: 148\r\n', '')));
    assert.equal(m.body, BASIC_SDP.join('\r\n'));
  });
  it('parseSip() skips CRLFs before the start line (§7.5)', () => {
    assert.equal(parseRequest(Buffer.concat([Buffer.from('\r\n\r\n'), BYE_F6])).method, 'BYE');
  });
});

describe('parseSip() and serializeSip() on a basic call', () => {
  for (const [name, bytes] of [
    ['INVITE', INVITE_F1],
    ['200 OK', OK_F4],
    ['ACK', ACK_F5],
    ['BYE', BYE_F6],
  ] as const) {
    it(`serializeSip(parseSip()) gives back the ${name} byte for byte`, () => {
      assert.deepEqual(serializeSip(parseSip(bytes)), bytes);
    });
  }

  it('parseSip() reads the 200 OK as a response with status, reason and received Via', () => {
    const m = parseSip(OK_F4) as SipResponse;
    assert.equal(m.kind, 'response');
    assert.equal(m.status, 200);
    assert.equal(m.reason, 'OK');
    assert.equal(parseVia(m.headers.get('Via')!).params.received, '192.0.2.101');
  });

  it('serializeSip() writes a BYE built by hand to the expected bytes, with Content-Length from the body', () => {
    const headers = new SipHeaders([
      ['Via', 'SIP/2.0/UDP client.biloxi.example.com:5060;branch=z9hG4bK74b43'],
      ['Max-Forwards', '70'],
      ['From', 'Bob <sip:bob@biloxi.example.com>;tag=8321234356'],
      ['To', 'Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl'],
      ['Call-ID', '3848276298220188511@atlanta.example.com'],
      ['CSeq', '2 BYE'],
    ]);
    const bye: SipRequest = { kind: 'request', method: 'BYE', uri: 'sip:alice@client.atlanta.example.com', headers, body: '' };
    assert.deepEqual(serializeSip(bye), BYE_F6);
  });

  it('serializeSip() replaces a wrong Content-Length with the byte length of the body', () => {
    const m = parseRequest(INVITE_F1);
    m.headers.set('Content-Length', '1');
    m.body = 'é';
    assert.match(serializeSip(m).toString(), /Content-Length: 2\r\n\r\né$/);
  });

  it('makeResponse() copies Via, From, Call-ID, CSeq, adds the To tag and writes RFC 3261 §8.2.6 bytes', () => {
    const invite = parseRequest(
      Buffer.from(INVITE_F1.toString().replace('CSeq: 1 INVITE\r\n', 'CSeq: 1 INVITE\r\nRecord-Route: <sip:p1.example.com;lr>\r\n')),
    );
    const res = makeResponse(invite, 180, 'Ringing', { toTag: '9fxced76sl', headers: [['Contact', '<sip:alice@client.atlanta.example.com>']] });
    assert.deepEqual(
      serializeSip(res),
      crlf(
        'SIP/2.0 180 Ringing',
        'Via: SIP/2.0/UDP client.biloxi.example.com:5060;branch=z9hG4bK74bf9',
        'From: Bob <sip:bob@biloxi.example.com>;tag=8321234356',
        'To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl',
        'Call-ID: 3848276298220188511@atlanta.example.com',
        'CSeq: 1 INVITE',
        'Record-Route: <sip:p1.example.com;lr>',
        'Contact: <sip:alice@client.atlanta.example.com>',
        'Content-Length: 0',
        '',
        '',
      ),
    );
  });

  it('makeResponse() keeps every Via in order, leaves 100 Trying without a tag and sets the body type', () => {
    const req = parseRequest(Buffer.from(BYE_F6.toString().replace(/^Via: (.*)\r\n/m, 'Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1, $1\r\n')));
    assert.deepEqual(req.headers.getAll('Via').length, 2);
    const trying = makeResponse(req, 100, 'Trying', { toTag: 'x' });
    assert.equal(trying.headers.get('To'), 'Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl');
    assert.deepEqual(trying.headers.getAll('Via'), req.headers.getAll('Via'));
    const withBody = makeResponse(parseRequest(INVITE_F1), 200, 'OK', { toTag: 'abc', body: 'v=0\r\n', contentType: 'application/sdp' });
    assert.equal(withBody.headers.get('To'), 'Alice <sip:alice@atlanta.example.com>;tag=abc');
    assert.equal(withBody.headers.get('Content-Type'), 'application/sdp');
    const reparsed = parseSip(serializeSip(withBody));
    assert.equal(reparsed.body, 'v=0\r\n');
  });
});

describe('SipHeaders', () => {
  it('get() and getAll() are case-insensitive and understand compact names', () => {
    const h = new SipHeaders([['call-id', 'x'], ['CONTACT', '<sip:a@b>']]);
    assert.equal(h.get('i'), 'x');
    assert.equal(h.get('Call-Id'), 'x');
    assert.deepEqual(h.getAll('m'), ['<sip:a@b>']);
    assert.deepEqual([...h], [['Call-ID', 'x'], ['Contact', '<sip:a@b>']]);
  });

  it('append() splits a list header at top-level commas only; set() replaces in place; delete() removes all', () => {
    const h = new SipHeaders();
    h.append('To', '<sip:b@example.com>');
    h.append('Contact', '"Doe, John" <sip:j@a.example.com;x=1,2>, <sip:k@b.example.com>');
    h.append('Subject', 'a, b');
    assert.deepEqual(h.getAll('Contact'), ['"Doe, John" <sip:j@a.example.com;x=1,2>', '<sip:k@b.example.com>']);
    assert.equal(h.get('Subject'), 'a, b');
    h.set('Contact', '<sip:z@c.example.com>');
    assert.deepEqual([...h].map(([n]) => n), ['To', 'Contact', 'Subject']);
    h.prepend('Via', 'SIP/2.0/UDP a;branch=z9hG4bK1');
    h.prepend('Via', 'SIP/2.0/UDP b;branch=z9hG4bK2');
    assert.deepEqual(h.getAll('Via'), ['SIP/2.0/UDP b;branch=z9hG4bK2', 'SIP/2.0/UDP a;branch=z9hG4bK1']);
    assert.equal(h.delete('via'), true);
    assert.equal(h.has('Via'), false);
    assert.equal(h.delete('Via'), false);
  });

  it('splitList() keeps escaped quotes inside a quoted string', () => {
    assert.deepEqual(splitList('"a \\", b" <sip:x@y>, <sip:z@w>'), ['"a \\", b" <sip:x@y>', '<sip:z@w>']);
  });
});

describe('header value helpers', () => {
  it('parseNameAddr() reads an addr-spec whose parameters belong to the header (§20.10)', () => {
    assert.deepEqual(parseNameAddr('sip:bob@example.com;tag=abc;lr'), { uri: 'sip:bob@example.com', params: { tag: 'abc', lr: true } });
  });
  it('parseNameAddr() keeps URI parameters inside angle brackets', () => {
    assert.deepEqual(parseNameAddr('<sip:p1.example.com;lr>'), { uri: 'sip:p1.example.com;lr', params: {} });
  });
  it('parseNameAddr() rejects an unterminated < with SipParseError', () => {
    assert.throws(() => parseNameAddr('Bob <sip:bob@example.com'), SipParseError);
  });
  it('parseNameAddr() rejects a value without a URI scheme with SipParseError', () => {
    assert.throws(() => parseNameAddr('<bob>'), SipParseError);
  });
  it('parseVia() reads IPv6 sent-by, a port and a valueless rport', () => {
    assert.deepEqual(parseVia('SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas;rport'), {
      protocol: 'SIP/2.0',
      transport: 'UDP',
      host: '[2001:db8::9:1]',
      port: 5070,
      params: { branch: 'z9hG4bKas', rport: true },
    });
  });
  it('parseVia() rejects a port above 65535 with SipParseError', () => {
    assert.throws(() => parseVia('SIP/2.0/UDP host:70000;branch=z9hG4bK1'), SipParseError);
  });
  it('parseCSeq() reads the number and method and rejects 2**31 with BAD_CSEQ', () => {
    assert.deepEqual(parseCSeq('314159 INVITE'), { seq: 314159, method: 'INVITE' });
    assert.throws(() => parseCSeq('2147483648 INVITE'), (e: unknown) => e instanceof SipParseError && e.code === 'BAD_CSEQ');
  });
  it('tagOf() returns the tag or undefined', () => {
    assert.equal(tagOf('"A" <sip:a@b>;tag=xyz'), 'xyz');
    assert.equal(tagOf('<sip:a@b>'), undefined);
    assert.equal(tagOf(undefined), undefined);
  });
  it('salvageSip() reads Via and Call-ID from a message parseSip() rejects, and nothing from garbage', () => {
    const s = salvageSip(CLERR);
    assert.equal(s?.headers.get('Call-ID'), 'clerr.0ha0isndaksdjweiafasdk3');
    assert.equal(s?.headers.getAll('Via').length, 1);
    assert.equal(salvageSip(Buffer.from([0x00, 0xff, 0x13])), undefined);
  });
});
