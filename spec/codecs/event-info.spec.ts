import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { accountOf } from '../../codecs/api-key.ts';
import { EventInfoParseError, parseEventInfo, serializeEventInfo } from '../../codecs/event-info.ts';
import { CodecError } from '../../codecs/errors.ts';
import type { EventInfo } from '../../runtime/contracts.ts';

const RESERVED: EventInfo = {
  eventId: '12345674',
  title: 'Quarterly call',
  format: 'hls',
  startsAt: '2026-12-01T15:00:00.000Z',
  createdAt: '2026-11-25T10:00:00.000Z',
  updatedAt: '2026-11-25T10:00:00.000Z',
  archiveDays: 30,
  hasPassword: false,
  attendeeUrl: 'http://localhost:8080/e/eyJlIjoiMTIzNDU2NzQiLCJyIjoiYXR0ZW5kZWUifQ.CpkwpC_n585GYJYuhL1WJrUKu-mRaaNOLWVpR0I4-gg',
  hostUrl: 'http://localhost:8080/e/host.token',
  status: 'reserved',
};

const ARCHIVED: EventInfo = {
  ...RESERVED,
  status: 'archived',
  hasPassword: true,
  liveAt: '2026-12-01T15:01:02.000Z',
  endedAt: '2026-12-01T16:00:00.000Z',
  updatedAt: '2026-12-01T16:01:00.000Z',
  archive: [
    { streamId: '12345674-voice-1-10002-mieemv40', start: 0, end: 1800.5 },
    { streamId: '12345674-voice-2-10050-mieemw11', start: 1790.25, end: 3538 },
  ],
};

/** The serialized form of RESERVED, written out by hand. */
const RESERVED_XML = `<?xml version="1.0" encoding="UTF-8"?>
<event id="12345674">
  <title>Quarterly call</title>
  <format>hls</format>
  <startsAt>2026-12-01T15:00:00.000Z</startsAt>
  <createdAt>2026-11-25T10:00:00.000Z</createdAt>
  <updatedAt>2026-11-25T10:00:00.000Z</updatedAt>
  <archiveDays>30</archiveDays>
  <hasPassword>false</hasPassword>
  <attendeeUrl>http://localhost:8080/e/eyJlIjoiMTIzNDU2NzQiLCJyIjoiYXR0ZW5kZWUifQ.CpkwpC_n585GYJYuhL1WJrUKu-mRaaNOLWVpR0I4-gg</attendeeUrl>
  <hostUrl>http://localhost:8080/e/host.token</hostUrl>
  <status>reserved</status>
</event>
`;

function parseFails(xml: string, code: string): void {
  assert.throws(
    () => parseEventInfo(xml),
    (e: unknown) => e instanceof EventInfoParseError && e instanceof CodecError && e.code === code,
    `expected ${code}`,
  );
}

/** RESERVED_XML with one element's text replaced, or removed when `value` is undefined. */
function withField(name: string, value: string | undefined): string {
  const re = new RegExp(`  <${name}>[^<]*</${name}>\\n`);
  assert.match(RESERVED_XML, re);
  return RESERVED_XML.replace(re, value === undefined ? '' : `  <${name}>${value}</${name}>\n`);
}

describe('event-info', () => {
  it('serializeEventInfo() writes the declaration, <event id> and one element per field', () => {
    assert.equal(serializeEventInfo(RESERVED), RESERVED_XML);
  });

  it('parseEventInfo() reads the hand-written document into the EventInfo', () => {
    assert.deepEqual(parseEventInfo(RESERVED_XML), RESERVED);
  });

  it('serializeEventInfo() writes the archive as <fragment stream start end/> in order', () => {
    const xml = serializeEventInfo(ARCHIVED);
    assert.match(
      xml,
      /  <archive>\n    <fragment stream="12345674-voice-1-10002-mieemv40" start="0" end="1800.5"\/>\n    <fragment stream="12345674-voice-2-10050-mieemw11" start="1790.25" end="3538"\/>\n  <\/archive>\n/,
    );
    assert.match(xml, /<liveAt>2026-12-01T15:01:02.000Z<\/liveAt>/);
    assert.match(xml, /<hasPassword>true<\/hasPassword>/);
  });

  it('parseEventInfo(serializeEventInfo()) round-trips an archived event with its fragments', () => {
    assert.deepEqual(parseEventInfo(serializeEventInfo(ARCHIVED)), ARCHIVED);
  });

  it('parseEventInfo(serializeEventInfo()) round-trips an archive-error event with its reason', () => {
    const info: EventInfo = { ...RESERVED, status: 'archive-error', archiveError: 'stream 12345674-x-1-a: files missing & "unreadable"' };
    assert.deepEqual(parseEventInfo(serializeEventInfo(info)), info);
  });

  it('parseEventInfo(serializeEventInfo()) round-trips an empty archive', () => {
    const info: EventInfo = { ...RESERVED, status: 'archived', archive: [] };
    assert.deepEqual(parseEventInfo(serializeEventInfo(info)), info);
  });

  it('serializeEventInfo() escapes <&>"\' in the title and parseEventInfo() restores it with unicode intact', () => {
    const title = `Q&A <live> "quoted" 'apos' ]]> — Zürich 日本語 🎙️ \t tab\nnew line  `;
    const info: EventInfo = { ...RESERVED, title, attendeeUrl: 'http://h/e/t?a=1&b=2' };
    const xml = serializeEventInfo(info);
    assert.match(xml, /<title>Q&amp;A &lt;live&gt; /);
    assert.doesNotMatch(xml, /<live>/);
    assert.deepEqual(parseEventInfo(xml), info);
  });

  it('parseEventInfo() round-trips titles that look like numbers, booleans or are empty', () => {
    for (const title of ['0012', '1e3', 'true', '', ' ']) {
      const info: EventInfo = { ...RESERVED, title };
      assert.deepEqual(parseEventInfo(serializeEventInfo(info)), info, JSON.stringify(title));
    }
  });

  it('parseEventInfo() decodes character references and the five predefined entities', () => {
    assert.equal(parseEventInfo(withField('title', 'a &#38; &#x3C; &lt;&gt;&amp;&quot;&apos; &#x1F399;')).title, `a & < <>&"' 🎙`);
  });

  it('serializeEventInfo() throws RangeError for characters XML cannot carry, an invalid event or stream ID', () => {
    assert.throws(() => serializeEventInfo({ ...RESERVED, title: 'bell\u0007' }), RangeError);
    assert.throws(() => serializeEventInfo({ ...RESERVED, title: 'cr\r' }), RangeError);
    assert.throws(() => serializeEventInfo({ ...RESERVED, title: 'lone \uD800' }), RangeError);
    assert.throws(() => serializeEventInfo({ ...RESERVED, eventId: '12345675' }), RangeError);
    assert.throws(() => serializeEventInfo({ ...RESERVED, archive: [{ streamId: '../x', start: 0, end: 1 }] }), RangeError);
  });

  it('serializeEventInfo() throws RangeError for values parseEventInfo() would refuse', () => {
    const stream = '12345674-voice-1-10002-mieemv40';
    assert.throws(() => serializeEventInfo({ ...RESERVED, createdAt: 'yesterday' }), RangeError);
    assert.throws(() => serializeEventInfo({ ...RESERVED, archiveDays: -1 }), RangeError);
    assert.throws(() => serializeEventInfo({ ...RESERVED, archiveDays: 1.5 }), RangeError);
    assert.throws(() => serializeEventInfo({ ...RESERVED, status: 'running' as EventInfo['status'] }), RangeError);
    assert.throws(() => serializeEventInfo({ ...RESERVED, format: 'dash' as EventInfo['format'] }), RangeError);
    assert.throws(() => serializeEventInfo({ ...RESERVED, archive: [{ streamId: stream, start: 5, end: 4 }] }), RangeError);
    assert.throws(() => serializeEventInfo({ ...RESERVED, archive: [{ streamId: stream, start: 0, end: Infinity }] }), RangeError);
  });

  it('parseEventInfo() refuses a DOCTYPE or ENTITY declaration with EVENT_INFO_DTD', () => {
    const lol = `<?xml version="1.0"?>\n<!DOCTYPE event [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>\n${RESERVED_XML.split('\n').slice(1).join('\n').replace('Quarterly call', '&lol2;')}`;
    parseFails(lol, 'EVENT_INFO_DTD');
    parseFails(RESERVED_XML.replace('<event', '<!doctype event SYSTEM "file:///etc/passwd">\n<event'), 'EVENT_INFO_DTD');
    parseFails(RESERVED_XML.replace('Quarterly call', '<!ENTITY x "y">'), 'EVENT_INFO_DTD');
  });

  it('parseEventInfo() refuses undeclared entities, a bare "&" and CDATA with EVENT_INFO_MALFORMED', () => {
    parseFails(withField('title', 'a &nbsp; b'), 'EVENT_INFO_MALFORMED');
    parseFails(withField('title', 'AT&T'), 'EVENT_INFO_MALFORMED');
    parseFails(withField('title', '&#0;'), 'EVENT_INFO_MALFORMED');
    parseFails(withField('title', '&#xD800;'), 'EVENT_INFO_MALFORMED');
    parseFails(RESERVED_XML.replace('Quarterly call', '<![CDATA[x]]>'), 'EVENT_INFO_MALFORMED');
  });

  it('parseEventInfo() refuses XML that is not well-formed with EVENT_INFO_MALFORMED', () => {
    parseFails('', 'EVENT_INFO_MALFORMED');
    parseFails('not xml at all', 'EVENT_INFO_MALFORMED');
    parseFails(RESERVED_XML.replace('</event>', ''), 'EVENT_INFO_MALFORMED');
    parseFails(RESERVED_XML.replace('</title>', '</titel>'), 'EVENT_INFO_MALFORMED');
    parseFails(RESERVED_XML.replace('<event id="12345674">', '<event id=12345674>'), 'EVENT_INFO_MALFORMED');
    parseFails(RESERVED_XML.replace('<event id="12345674">', '<event id="12345674" id="12345674">'), 'EVENT_INFO_MALFORMED');
    parseFails(RESERVED_XML + '<event id="79927398"></event>\n', 'EVENT_INFO_MALFORMED');
    parseFails(RESERVED_XML.replace(/event/g, 'reservation'), 'EVENT_INFO_MALFORMED');
    parseFails(`${RESERVED_XML}${' '.repeat(1_000_001)}`, 'EVENT_INFO_MALFORMED');
    parseFails(42 as unknown as string, 'EVENT_INFO_MALFORMED');
  });

  for (const name of ['title', 'format', 'createdAt', 'updatedAt', 'archiveDays', 'hasPassword', 'attendeeUrl', 'hostUrl', 'status']) {
    it(`parseEventInfo() refuses a document without <${name}> with EVENT_INFO_MISSING_FIELD`, () => {
      parseFails(withField(name, undefined), 'EVENT_INFO_MISSING_FIELD');
    });
  }

  it('parseEventInfo() reads a document without the optional <startsAt>', () => {
    const { startsAt: _omit, ...rest } = RESERVED;
    assert.deepEqual(parseEventInfo(withField('startsAt', undefined)), rest);
  });

  it('parseEventInfo() refuses invalid field values with EVENT_INFO_INVALID', () => {
    const bad: Array<[string, string]> = [
      ['format', 'dash'],
      ['status', 'running'],
      ['status', ''],
      ['archiveDays', '-1'],
      ['archiveDays', '1.5'],
      ['archiveDays', '30 '],
      ['archiveDays', ''],
      ['hasPassword', 'yes'],
      ['hasPassword', 'TRUE'],
      ['createdAt', 'yesterday'],
      ['updatedAt', ''],
      ['startsAt', 'soon'],
    ];
    for (const [name, value] of bad) {
      assert.throws(
        () => parseEventInfo(withField(name, value)),
        (e: unknown) => e instanceof EventInfoParseError && e.code === 'EVENT_INFO_INVALID',
        `${name}=${JSON.stringify(value)}`,
      );
    }
  });

  it('parseEventInfo() refuses an invalid or missing event ID with EVENT_INFO_INVALID', () => {
    parseFails(RESERVED_XML.replace('id="12345674"', 'id="12345675"'), 'EVENT_INFO_INVALID');
    parseFails(RESERVED_XML.replace('id="12345674"', 'id="../../etc"'), 'EVENT_INFO_INVALID');
    parseFails(RESERVED_XML.replace(' id="12345674"', ''), 'EVENT_INFO_INVALID');
  });

  it('parseEventInfo() refuses a repeated or nested element with EVENT_INFO_INVALID', () => {
    parseFails(RESERVED_XML.replace('</hostUrl>', '</hostUrl>\n  <hostUrl>http://evil/</hostUrl>'), 'EVENT_INFO_INVALID');
    parseFails(withField('title', '<b>bold</b>'), 'EVENT_INFO_INVALID');
  });

  it('parseEventInfo() refuses bad archive fragments with EVENT_INFO_INVALID', () => {
    const good = serializeEventInfo(ARCHIVED);
    const cases = [
      good.replace('stream="12345674-voice-1-10002-mieemv40"', 'stream="../../../etc/passwd"'),
      good.replace('stream="12345674-voice-1-10002-mieemv40"', 'stream="12345675-voice-1-10002-mieemv40"'),
      good.replace(' stream="12345674-voice-1-10002-mieemv40"', ''),
      good.replace('start="0"', 'start="-1"'),
      good.replace('start="0"', 'start="zero"'),
      good.replace('start="0"', 'start="Infinity"'),
      good.replace('start="0"', 'start=""'),
      good.replace('end="1800.5"', 'end="1e999"'),
      good.replace('end="3538"', 'end="1000"'),
      good.replace('<fragment stream="12345674-voice-2', '<clip stream="12345674-voice-2'),
      good.replace('</archive>', '</archive>\n  <archive/>'),
    ];
    for (const xml of cases) parseFails(xml, 'EVENT_INFO_INVALID');
  });

  it('parseEventInfo() accepts exponent notation in fragment offsets', () => {
    const xml = serializeEventInfo(ARCHIVED).replace('end="1800.5"', 'end="1.8005e3"');
    assert.equal(parseEventInfo(xml).archive![0].end, 1800.5);
  });

  it('serializeEventInfo() writes <account> after the other fields and parseEventInfo() reads it back', () => {
    const xml = serializeEventInfo({ ...RESERVED, account: 'acme-corp' });
    assert.equal(xml, RESERVED_XML.replace('</event>', '  <account>acme-corp</account>\n</event>'));
    assert.deepEqual(parseEventInfo(xml), { ...RESERVED, account: 'acme-corp' });
  });

  it('parseEventInfo() reads a file written before accounts existed without an account: accountOf() is operator', () => {
    const info = parseEventInfo(RESERVED_XML);
    assert.equal(info.account, undefined);
    assert.equal(accountOf(info), 'operator');
  });

  it('parseEventInfo() refuses an invalid <account> with EVENT_INFO_INVALID; serializeEventInfo() refuses it with RangeError', () => {
    for (const bad of ['', 'Acme', 'a b', '-acme', 'x'.repeat(65), 'acme/../b']) {
      parseFails(RESERVED_XML.replace('</event>', `  <account>${bad}</account>\n</event>`), 'EVENT_INFO_INVALID');
      assert.throws(() => serializeEventInfo({ ...RESERVED, account: bad }), RangeError, bad);
    }
    parseFails(RESERVED_XML.replace('</event>', '  <account>a</account>\n  <account>b</account>\n</event>'), 'EVENT_INFO_INVALID');
  });
});
