/**
 * event-info.xml (DESIGN.md "Content storage layout"): the reservation and, once archived, the
 * virtual archive. It lives in content storage and is read back by any node, so parsing treats it
 * as untrusted: no DTDs or custom entities (only the five predefined ones, XML 1.0 §4.6), every
 * field checked.
 */
import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser';
import type { ArchiveFragment, EventInfo, EventStatus } from '../runtime/contracts.ts';
import { ACCOUNT_RULE, isValidAccount } from './api-key.ts';
import { CodecError } from './errors.ts';
import { isValidEventId, isValidStreamId } from './ids.ts';

/** event-info.xml that is not well-formed or lacks or garbles a field. */
export class EventInfoParseError extends CodecError {}

/** Longest event-info.xml accepted; a reservation with a long archive is a few kB. */
export const MAX_EVENT_INFO_BYTES = 1_000_000;

const STATUSES: ReadonlySet<string> = new Set<EventStatus>(['reserved', 'live', 'ended', 'archiving', 'archived', 'archive-error', 'cancelled']);
const TEXT_FIELDS = ['title', 'format', 'startsAt', 'createdAt', 'updatedAt', 'archiveDays', 'hasPassword', 'attendeeUrl', 'hostUrl', 'status', 'liveAt', 'endedAt', 'archiveError', 'account'] as const;
/** Characters XML 1.0 §2.2 does not allow in a document, even as character references. */
const NON_XML_CHAR_RE = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const NUMBER_RE = /^(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  // Keep every value a string: a title "0012" or "1e3" must not turn into a number.
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  // Entities are decoded by decodeXmlText() below: only the five predefined ones and character
  // references (XML 1.0 §4.1, §4.6); the library would leave "&#38;" undecoded and "&nbsp;" unflagged.
  processEntities: false,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  allowBooleanAttributes: false,
  isArray: (name) => name === 'fragment',
});

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  format: true,
  indentBy: '  ',
  processEntities: true,
  suppressEmptyNode: true,
});

function fail(message: string, code = 'EVENT_INFO_INVALID'): never {
  throw new EventInfoParseError(message, code);
}

function checkXmlText(value: string, field: string): void {
  if (NON_XML_CHAR_RE.test(value)) throw new RangeError(`event-info ${field} holds a character XML cannot carry`);
  // A bare CR would come back as LF (XML 1.0 §2.11 end-of-line handling), so the value would not round-trip.
  if (value.includes('\r')) throw new RangeError(`event-info ${field} holds a carriage return`);
}

/** Writes event-info.xml: declaration, `<event id="…">` and one child element per field. */
export function serializeEventInfo(info: EventInfo): string {
  if (!isValidEventId(info.eventId)) throw new RangeError(`event-info has an invalid event ID ${JSON.stringify(info.eventId)}`);
  // Refuse here what parseEventInfo() would refuse, so a written file can always be read back.
  if (info.format !== 'hls') throw new RangeError(`event-info format ${JSON.stringify(info.format)} is not "hls"`);
  if (!STATUSES.has(info.status)) throw new RangeError(`event-info status ${JSON.stringify(info.status)} is not an event status`);
  if (!Number.isInteger(info.archiveDays) || info.archiveDays < 0 || info.archiveDays > 999_999) {
    throw new RangeError(`event-info archiveDays ${info.archiveDays} is not a non-negative integer`);
  }
  if (info.account !== undefined && !isValidAccount(info.account)) throw new RangeError(`event-info account ${JSON.stringify(info.account)} ${ACCOUNT_RULE}`);
  for (const k of ['startsAt', 'createdAt', 'updatedAt', 'liveAt', 'endedAt'] as const) {
    const v = info[k];
    if (v !== undefined && (v.length === 0 || v.length > 64 || Number.isNaN(Date.parse(v)))) throw new RangeError(`event-info ${k} is not a date/time`);
  }
  const event: Record<string, unknown> = { '@_id': info.eventId };
  const values: Record<(typeof TEXT_FIELDS)[number], string | undefined> = {
    title: info.title,
    format: info.format,
    startsAt: info.startsAt,
    createdAt: info.createdAt,
    updatedAt: info.updatedAt,
    archiveDays: String(info.archiveDays),
    hasPassword: String(info.hasPassword),
    attendeeUrl: info.attendeeUrl,
    hostUrl: info.hostUrl,
    status: info.status,
    liveAt: info.liveAt,
    endedAt: info.endedAt,
    archiveError: info.archiveError,
    account: info.account,
  };
  for (const k of TEXT_FIELDS) {
    const v = values[k];
    if (v === undefined) continue;
    checkXmlText(v, k);
    event[k] = v;
  }
  if (info.archive !== undefined) {
    event.archive = {
      fragment: info.archive.map((f) => {
        if (!isValidStreamId(f.streamId)) throw new RangeError(`archive fragment has an invalid stream ID ${JSON.stringify(f.streamId)}`);
        if (!Number.isFinite(f.start) || !Number.isFinite(f.end) || f.start < 0 || f.end < f.start) {
          throw new RangeError(`archive fragment of ${f.streamId} has a bad range ${f.start}–${f.end}`);
        }
        return { '@_stream': f.streamId, '@_start': String(f.start), '@_end': String(f.end) };
      }),
    };
  }
  const body = builder.build({ event }) as string;
  return `<?xml version="1.0" encoding="UTF-8"?>\n${body}`;
}

const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Decodes the five predefined entities and character references; any other "&" is an error. */
function decodeXmlText(raw: string, where: string): string {
  return raw.replace(/&([^;&]{0,10});?/g, (whole, name: string) => {
    if (!whole.endsWith(';')) fail(`${where} holds a bare "&"`, 'EVENT_INFO_MALFORMED');
    const predefined = PREDEFINED[name];
    if (predefined !== undefined) return predefined;
    const m = /^#(?:x([0-9A-Fa-f]{1,6})|(\d{1,7}))$/.exec(name);
    if (m === null) fail(`${where} uses the undeclared entity &${name};`, 'EVENT_INFO_MALFORMED');
    const cp = m[1] !== undefined ? parseInt(m[1], 16) : Number(m[2]);
    const ch = cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : '\u0000';
    if (NON_XML_CHAR_RE.test(ch)) fail(`${where} references a character XML does not allow`, 'EVENT_INFO_MALFORMED');
    return ch;
  });
}

function text(event: Record<string, unknown>, name: string, required: boolean): string | undefined {
  const v = event[name];
  if (v === undefined) {
    if (required) fail(`<${name}> is missing`, 'EVENT_INFO_MISSING_FIELD');
    return undefined;
  }
  if (typeof v !== 'string') fail(`<${name}> must hold text only, once`);
  return decodeXmlText(v, `<${name}>`);
}

function isoTime(event: Record<string, unknown>, name: string, required: boolean): string | undefined {
  const v = text(event, name, required);
  if (v !== undefined && (v.length === 0 || v.length > 64 || Number.isNaN(Date.parse(v)))) fail(`<${name}> is not a date/time`);
  return v;
}

function fragmentNumber(v: unknown, name: string): number {
  const t = typeof v === 'string' ? decodeXmlText(v, `<fragment ${name}>`) : '';
  if (!NUMBER_RE.test(t)) fail(`<fragment ${name}> is not a non-negative number`);
  const n = Number(t);
  if (!Number.isFinite(n)) fail(`<fragment ${name}> is not finite`);
  return n;
}

function parseArchive(v: unknown): ArchiveFragment[] {
  if (v === '') return [];
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('<archive> must appear once and hold <fragment> elements');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== 'fragment' && !(k === '#text' && typeof o[k] === 'string' && (o[k] as string).trim() === '')) fail(`<archive> holds unexpected <${k}>`);
  }
  const list = o.fragment;
  if (list === undefined) return [];
  if (!Array.isArray(list)) fail('<archive> fragments unreadable');
  return list.map((f: unknown, i): ArchiveFragment => {
    if (typeof f !== 'object' || f === null) fail(`<fragment> ${i + 1} has no attributes`);
    const a = f as Record<string, unknown>;
    const rawStream = a['@_stream'];
    const streamId = typeof rawStream === 'string' ? decodeXmlText(rawStream, '<fragment stream>') : undefined;
    if (!isValidStreamId(streamId)) fail(`<fragment> ${i + 1} has an invalid stream ID`);
    const start = fragmentNumber(a['@_start'], 'start');
    const end = fragmentNumber(a['@_end'], 'end');
    if (end < start) fail(`<fragment> ${i + 1} ends before it starts`);
    return { streamId, start, end };
  });
}

/** Reads event-info.xml; throws EventInfoParseError for malformed XML, DTDs, or a missing or invalid field. */
export function parseEventInfo(xml: string): EventInfo {
  if (typeof xml !== 'string') fail('event-info is not text', 'EVENT_INFO_MALFORMED');
  if (xml.length > MAX_EVENT_INFO_BYTES) fail('event-info is too large', 'EVENT_INFO_MALFORMED');
  // Entity declarations are how billion-laughs and external-entity attacks start; event-info never has them.
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) fail('event-info must not contain a DTD or entity declaration', 'EVENT_INFO_DTD');
  // CDATA would bypass entity decoding; the serializer never writes it.
  if (xml.includes('<![CDATA[')) fail('event-info must not contain CDATA sections', 'EVENT_INFO_MALFORMED');
  const valid = XMLValidator.validate(xml);
  if (valid !== true) fail(`event-info is not well-formed XML: ${valid.err.msg} (line ${valid.err.line})`, 'EVENT_INFO_MALFORMED');
  let doc: Record<string, unknown>;
  try {
    doc = parser.parse(xml) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof EventInfoParseError) throw err;
    fail(`event-info is not well-formed XML: ${(err as Error).message}`, 'EVENT_INFO_MALFORMED');
  }
  const roots = Object.keys(doc).filter((k) => !(k === '#text' && String(doc[k]).trim() === ''));
  if (roots.length !== 1 || roots[0] !== 'event') fail('event-info root element must be <event>', 'EVENT_INFO_MALFORMED');
  const raw = doc.event;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('<event> must appear once with an id', 'EVENT_INFO_MALFORMED');
  const event = raw as Record<string, unknown>;

  const rawId = event['@_id'];
  const eventId = typeof rawId === 'string' ? decodeXmlText(rawId, '<event id>') : undefined;
  if (!isValidEventId(eventId)) fail('<event id> is not a valid event ID');
  const format = text(event, 'format', true);
  if (format !== 'hls') fail('<format> must be "hls"');
  const archiveDaysText = text(event, 'archiveDays', true)!;
  if (!/^\d{1,6}$/.test(archiveDaysText)) fail('<archiveDays> must be a non-negative integer');
  const hasPasswordText = text(event, 'hasPassword', true);
  if (hasPasswordText !== 'true' && hasPasswordText !== 'false') fail('<hasPassword> must be true or false');
  const status = text(event, 'status', true)!;
  if (!STATUSES.has(status)) fail(`<status> "${status}" is not an event status`);

  const info: EventInfo = {
    eventId,
    title: text(event, 'title', true)!,
    format,
    createdAt: isoTime(event, 'createdAt', true)!,
    updatedAt: isoTime(event, 'updatedAt', true)!,
    archiveDays: Number(archiveDaysText),
    hasPassword: hasPasswordText === 'true',
    attendeeUrl: text(event, 'attendeeUrl', true)!,
    hostUrl: text(event, 'hostUrl', true)!,
    status: status as EventStatus,
  };
  const startsAt = isoTime(event, 'startsAt', false);
  if (startsAt !== undefined) info.startsAt = startsAt;
  const liveAt = isoTime(event, 'liveAt', false);
  if (liveAt !== undefined) info.liveAt = liveAt;
  const endedAt = isoTime(event, 'endedAt', false);
  if (endedAt !== undefined) info.endedAt = endedAt;
  if (event.archive !== undefined) info.archive = parseArchive(event.archive);
  const archiveError = text(event, 'archiveError', false);
  if (archiveError !== undefined) info.archiveError = archiveError;
  // Written since accounts exist (issue 5 item 6); a file without it belongs to the operator (accountOf).
  const account = text(event, 'account', false);
  if (account !== undefined) {
    if (!isValidAccount(account)) fail(`<account> ${ACCOUNT_RULE}`);
    info.account = account;
  }
  return info;
}
