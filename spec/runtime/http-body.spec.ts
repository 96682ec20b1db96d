import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import {
  MAX_XML_DEPTH, MAX_XML_ELEMENTS, bodyKind, errorToXml, parseBody, parseJson, parseRequestBody, parseXml, prefersXml, readBody, toXml,
} from '../../runtime/http-body.ts';
import { MalformedBodyError, PayloadTooLargeError, UnsupportedMediaTypeError } from '../../runtime/errors.ts';

/** A request stand-in: headers plus a body stream. */
function fakeReq(headers: Record<string, string>, chunks: Buffer[]): IncomingMessage & PassThrough {
  const s = new PassThrough() as unknown as IncomingMessage & PassThrough;
  (s as { headers: Record<string, string> }).headers = headers;
  setImmediate(() => {
    for (const c of chunks) s.write(c);
    s.end();
  });
  return s;
}

describe('runtime/http-body', () => {
  describe('bodyKind()', () => {
    const table: Array<[string | undefined, 'json' | 'xml' | undefined]> = [
      ['application/json', 'json'],
      ['application/json; charset=utf-8', 'json'],
      ['Application/JSON', 'json'],
      ['application/xml', 'xml'],
      ['text/xml; charset=utf-8', 'xml'],
      ['text/plain', undefined],
      [undefined, undefined],
    ];
    for (const [ct, kind] of table) it(`bodyKind(${JSON.stringify(ct)}) is ${kind}`, () => assert.equal(bodyKind(ct), kind));
  });

  it('parseJson() of a broken document throws MalformedBodyError naming line and column', () => {
    assert.throws(() => parseJson('{\n  "title": "x",\n  oops\n}'), (e: Error) => e instanceof MalformedBodyError && /malformed JSON body at line 3 column \d+/.test(e.message));
  });

  it('parseJson() refuses a "__proto__" key', () => {
    assert.throws(() => parseJson('{"__proto__": {"admin": true}}'), (e: Error) => e instanceof MalformedBodyError && /__proto__/.test(e.message));
  });

  it('parseXml() of an event gives the same object as the JSON, numbers only for numeric fields', () => {
    const xml = '<?xml version="1.0"?><event><title>2024 &amp; beyond</title><startsAt>2030-01-01T10:00:00Z</startsAt><format>hls</format><archiveDays>30</archiveDays><password>1234</password></event>';
    assert.deepEqual(parseXml(xml), { title: '2024 & beyond', startsAt: '2030-01-01T10:00:00Z', format: 'hls', archiveDays: 30, password: '1234' });
  });

  it('parseXml() of an empty root is an empty object', () => {
    assert.deepEqual(parseXml('<event/>'), {});
  });

  it('parseXml() of unclosed tags throws MalformedBodyError with line and column', () => {
    assert.throws(() => parseXml('<event>\n<title>x</event>'), (e: Error) => e instanceof MalformedBodyError && /malformed XML body at line 2/.test(e.message));
  });

  it('parseXml() refuses a DOCTYPE with a message saying so', () => {
    const bomb = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><event><title>&lol2;</title></event>';
    assert.throws(() => parseXml(bomb), (e: Error) => e instanceof MalformedBodyError && /<!DOCTYPE> declarations are not accepted/.test(e.message));
  });

  it('parseXml() refuses an ENTITY declaration without a DOCTYPE', () => {
    assert.throws(() => parseXml('<event><!ENTITY x "y"><title>t</title></event>'), (e: Error) => e instanceof MalformedBodyError && /<!ENTITY>/.test(e.message));
  });

  it('parseXml() leaves an undeclared entity reference unexpanded', () => {
    assert.deepEqual(parseXml('<event><title>&xxe;</title></event>'), { title: '&xxe;' });
  });

  it(`parseXml() refuses nesting deeper than ${MAX_XML_DEPTH}`, () => {
    const deep = '<a>'.repeat(MAX_XML_DEPTH + 1) + '</a>'.repeat(MAX_XML_DEPTH + 1);
    assert.throws(() => parseXml(deep), (e: Error) => e instanceof MalformedBodyError && /nests deeper than 32/.test(e.message));
    assert.doesNotThrow(() => parseXml('<a>'.repeat(MAX_XML_DEPTH) + '</a>'.repeat(MAX_XML_DEPTH)));
  });

  it(`parseXml() refuses more than ${MAX_XML_ELEMENTS} elements`, () => {
    const many = '<event>' + '<x/>'.repeat(MAX_XML_ELEMENTS) + '</event>';
    assert.throws(() => parseXml(many), (e: Error) => e instanceof MalformedBodyError && /more than 1000 elements/.test(e.message));
  });

  it('parseBody() with text/plain throws UnsupportedMediaTypeError (415)', () => {
    assert.throws(() => parseBody('hello', 'text/plain'), (e: Error) => e instanceof UnsupportedMediaTypeError && (e as UnsupportedMediaTypeError).code === 415);
  });

  it('parseBody() of an empty body is undefined', () => {
    assert.equal(parseBody('  ', 'application/json'), undefined);
  });

  it('parseBody() over the cap throws PayloadTooLargeError (413)', () => {
    assert.throws(() => parseBody('{"title":"' + 'x'.repeat(100) + '"}', 'application/json', 50), PayloadTooLargeError);
  });

  it('readBody() of a body within the cap resolves with its bytes', async () => {
    const buf = await readBody(fakeReq({}, [Buffer.from('{"a":'), Buffer.from('1}')]), 100);
    assert.equal(buf.toString(), '{"a":1}');
  });

  it('readBody() rejects with PayloadTooLargeError once chunked input passes the cap', async () => {
    await assert.rejects(readBody(fakeReq({}, [Buffer.alloc(60), Buffer.alloc(60)]), 100), PayloadTooLargeError);
  });

  it('readBody() rejects at once when Content-Length declares more than the cap', async () => {
    await assert.rejects(readBody(fakeReq({ 'content-length': '2000000' }, []), 100), PayloadTooLargeError);
  });

  it('parseRequestBody() with text/plain rejects with 415 before reading', async () => {
    await assert.rejects(parseRequestBody(fakeReq({ 'content-type': 'text/plain', 'content-length': '5' }, [Buffer.from('hello')]), 100), UnsupportedMediaTypeError);
  });

  it('parseRequestBody() of an XML request gives kind xml and the object', async () => {
    const body = Buffer.from('<event><title>t</title></event>');
    const parsed = await parseRequestBody(fakeReq({ 'content-type': 'application/xml', 'content-length': String(body.length) }, [body]), 100);
    assert.deepEqual(parsed, { kind: 'xml', value: { title: 't' } });
  });

  it('toXml() writes objects as elements, lists with singular children, escapes text, leaves out null', () => {
    const xml = toXml('event', { eventId: '12345674', title: 'a < b & "c"', missing: null, streams: [{ streamId: 's1', port: 10000 }], archive: [] });
    assert.equal(
      xml,
      '<?xml version="1.0" encoding="UTF-8"?>\n<event>\n  <eventId>12345674</eventId>\n  <title>a &lt; b &amp; &quot;c&quot;</title>\n' +
        '  <streams>\n    <stream>\n      <streamId>s1</streamId>\n      <port>10000</port>\n    </stream>\n  </streams>\n  <archive/>\n</event>\n',
    );
  });

  it('toXml() of a list parses back through parseXml()', () => {
    assert.deepEqual(parseXml(toXml('events', [{ eventId: '1' }, { eventId: '2' }])), { event: [{ eventId: '1' }, { eventId: '2' }] });
  });

  it('toXml() keys that are not XML names become <item key="…">', () => {
    assert.match(toXml('x', { 'a b': 1 }), /<item key="a b">1<\/item>/);
  });

  it('errorToXml() writes code, message and one <field name> per field', () => {
    assert.equal(
      errorToXml('VALIDATION_FAILED', 'invalid reservation: title', { title: 'must be 1-200 characters' }),
      '<?xml version="1.0" encoding="UTF-8"?>\n<error>\n  <code>VALIDATION_FAILED</code>\n  <message>invalid reservation: title</message>\n' +
        '  <fields>\n    <field name="title">must be 1-200 characters</field>\n  </fields>\n</error>\n',
    );
  });

  describe('prefersXml()', () => {
    const table: Array<[string | undefined, boolean]> = [
      ['application/xml', true],
      ['text/xml', true],
      ['application/json', false],
      ['*/*', false],
      [undefined, false],
      ['application/json, application/xml', false],
      ['application/xml, application/json', true],
      ['application/json;q=0.5, application/xml', true],
      ['application/xml;q=0.1, */*', false],
    ];
    for (const [accept, xml] of table) it(`prefersXml(${JSON.stringify(accept)}) is ${xml}`, () => assert.equal(prefersXml(accept), xml));
  });
});
