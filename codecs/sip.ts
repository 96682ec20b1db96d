/**
 * SIP message syntax: RFC 3261 §7 (messages), §25 (augmented BNF), §18.3 (framing over UDP),
 * §8.2.6 (building a response). Pure: strings and Buffers in, values out.
 *
 *   SIP-message  = start-line *( message-header ) CRLF [ message-body ]
 *   start-line   = Request-Line / Status-Line
 *   Request-Line = Method SP Request-URI SP SIP-Version CRLF
 *   Status-Line  = SIP-Version SP Status-Code SP Reason-Phrase CRLF
 *   message-header = field-name HCOLON field-value CRLF   ; HCOLON = *( SP / HTAB ) ":" SWS
 */
import { CodecError } from './errors.ts';

/** Largest datagram parseSip() accepts (64 KiB). */
export const MAX_SIP_MESSAGE_BYTES = 65_536;

/** A message that does not follow RFC 3261 §25; `code` names the rule that failed. */
export class SipParseError extends CodecError {}

/** A parsed SIP request (RFC 3261 §7.1). */
export interface SipRequest {
  kind: 'request';
  method: string;
  uri: string;
  headers: SipHeaders;
  body: string;
}

/** A parsed SIP response (RFC 3261 §7.2). */
export interface SipResponse {
  kind: 'response';
  status: number;
  reason: string;
  headers: SipHeaders;
  body: string;
}

/** A SIP request or response. */
export type SipMessage = SipRequest | SipResponse;

/** Compact header forms (RFC 3261 §7.3.3 and the IANA SIP parameters registry). */
const COMPACT: Record<string, string> = {
  a: 'Accept-Contact', b: 'Referred-By', c: 'Content-Type', d: 'Request-Disposition',
  e: 'Content-Encoding', f: 'From', i: 'Call-ID', j: 'Reject-Contact', k: 'Supported',
  l: 'Content-Length', m: 'Contact', n: 'Identity-Info', o: 'Event', r: 'Refer-To',
  s: 'Subject', t: 'To', u: 'Allow-Events', v: 'Via', x: 'Session-Expires', y: 'Identity',
};

/** Canonical spellings of the headers we name; others keep the spelling they arrived with. */
const CANONICAL = new Map<string, string>(
  [
    'Accept', 'Accept-Encoding', 'Accept-Language', 'Alert-Info', 'Allow', 'Allow-Events',
    'Authentication-Info', 'Authorization', 'Call-ID', 'Call-Info', 'Contact', 'Content-Disposition',
    'Content-Encoding', 'Content-Language', 'Content-Length', 'Content-Type', 'CSeq', 'Date',
    'Error-Info', 'Event', 'Expires', 'From', 'In-Reply-To', 'Max-Forwards', 'Min-Expires',
    'Min-SE', 'MIME-Version', 'Organization', 'P-Asserted-Identity', 'Priority',
    'Proxy-Authenticate', 'Proxy-Authorization', 'Proxy-Require', 'RAck', 'Reason',
    'Record-Route', 'Refer-To', 'Referred-By', 'Reply-To', 'Require', 'Retry-After', 'Route',
    'RSeq', 'Server', 'Session-Expires', 'Subject', 'Supported', 'Timestamp', 'To',
    'Unsupported', 'User-Agent', 'Via', 'Warning', 'WWW-Authenticate',
  ].map((n) => [n.toLowerCase(), n]),
);

/**
 * Headers whose values are comma-separated lists that are stored one element per entry
 * (RFC 3261 §7.3.1: such a header is equivalent to several lines of the same name).
 */
const LIST_HEADERS = new Set(['via', 'route', 'record-route', 'contact']);

/** Headers that may appear at most once (RFC 3261 §20, table 2 and 3). */
const SINGLE_HEADERS = ['From', 'To', 'Call-ID', 'CSeq', 'Max-Forwards', 'Content-Length'];

/** Headers every request carries (RFC 3261 §8.1.1); Max-Forwards is tolerated if absent. */
const MANDATORY_HEADERS = ['Via', 'From', 'To', 'Call-ID', 'CSeq'];

const TOKEN = /^[A-Za-z0-9\-.!%*_+`'~]+$/;
const URI = /^[A-Za-z][A-Za-z0-9+.\-]*:\S+$/;

/** The canonical name of a header: compact forms expanded, known names in their RFC spelling. */
export function canonicalHeaderName(name: string): string {
  const lower = name.toLowerCase();
  if (lower.length === 1 && COMPACT[lower]) return COMPACT[lower];
  return CANONICAL.get(lower) ?? name;
}

/** Ordered, case-insensitive, multi-valued SIP headers; list headers hold one element per entry. */
export class SipHeaders implements Iterable<[string, string]> {
  #entries: Array<[string, string]> = [];

  constructor(init?: Iterable<readonly [string, string]>) {
    if (init) for (const [n, v] of init) this.append(n, v);
  }

  /** First value of the header, or undefined. */
  get(name: string): string | undefined {
    const key = canonicalHeaderName(name).toLowerCase();
    return this.#entries.find(([n]) => n.toLowerCase() === key)?.[1];
  }

  /** Every value of the header, in order. */
  getAll(name: string): string[] {
    const key = canonicalHeaderName(name).toLowerCase();
    return this.#entries.filter(([n]) => n.toLowerCase() === key).map(([, v]) => v);
  }

  /** Whether the header is present. */
  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Replace every value of the header by one value, at the place of the first. */
  set(name: string, value: string): this {
    const canonical = canonicalHeaderName(name);
    const key = canonical.toLowerCase();
    const at = this.#entries.findIndex(([n]) => n.toLowerCase() === key);
    this.delete(canonical);
    const added = expand(canonical, value);
    if (at < 0) this.#entries.push(...added);
    else this.#entries.splice(Math.min(at, this.#entries.length), 0, ...added);
    return this;
  }

  /** Add a value after the existing ones (a list value is split into its elements). */
  append(name: string, value: string): this {
    this.#entries.push(...expand(canonicalHeaderName(name), value));
    return this;
  }

  /** Put a value before the existing ones of that header (e.g. a new top Via). */
  prepend(name: string, value: string): this {
    const canonical = canonicalHeaderName(name);
    const key = canonical.toLowerCase();
    const at = this.#entries.findIndex(([n]) => n.toLowerCase() === key);
    this.#entries.splice(at < 0 ? this.#entries.length : at, 0, ...expand(canonical, value));
    return this;
  }

  /** Remove every value of the header; true if there was one. */
  delete(name: string): boolean {
    const key = canonicalHeaderName(name).toLowerCase();
    const before = this.#entries.length;
    this.#entries = this.#entries.filter(([n]) => n.toLowerCase() !== key);
    return this.#entries.length !== before;
  }

  /** Number of entries (list elements count one each). */
  get size(): number {
    return this.#entries.length;
  }

  /** A copy that can be changed without touching this one. */
  clone(): SipHeaders {
    const copy = new SipHeaders();
    copy.#entries = this.#entries.map(([n, v]) => [n, v]);
    return copy;
  }

  /** Entries as [canonical name, value]. */
  [Symbol.iterator](): Iterator<[string, string]> {
    return this.#entries.map(([n, v]): [string, string] => [n, v])[Symbol.iterator]();
  }
}

function expand(canonical: string, value: string): Array<[string, string]> {
  if (LIST_HEADERS.has(canonical.toLowerCase()) && value.trim() !== '*') {
    return splitList(value).map((v): [string, string] => [canonical, v]);
  }
  return [[canonical, value]];
}

/** Split a comma-separated header value at top-level commas (not inside quotes or <>). */
export function splitList(value: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (quoted) {
      if (ch === '\\') i++;
      else if (ch === '"') quoted = false;
    } else if (ch === '"') quoted = true;
    else if (ch === '<') depth++;
    else if (ch === '>') depth = Math.max(0, depth - 1);
    else if (ch === ',' && depth === 0) {
      out.push(value.slice(start, i).trim());
      start = i + 1;
    }
  }
  out.push(value.slice(start).trim());
  return out;
}

/** Parse one datagram into a request or response (RFC 3261 §7, §18.3); throws SipParseError. */
export function parseSip(buf: Buffer): SipMessage {
  if (buf.length > MAX_SIP_MESSAGE_BYTES) {
    throw new SipParseError(`message of ${buf.length} bytes exceeds ${MAX_SIP_MESSAGE_BYTES}`, 'TOO_LARGE');
  }
  // §7.5: CRLFs before the start line are ignored.
  let start = 0;
  while (start + 1 < buf.length && buf[start] === 0x0d && buf[start + 1] === 0x0a) start += 2;
  const end = buf.indexOf('\r\n\r\n', start, 'latin1');
  if (end < 0) throw new SipParseError('no empty line (CRLF CRLF) after the headers', 'NO_HEADER_END');
  const lines = buf.toString('utf8', start, end).split('\r\n');
  const startLine = lines[0];
  const headers = parseHeaderLines(lines.slice(1));

  // §18.3: Content-Length counts octets; without one the body runs to the end of the datagram.
  const bodyStart = end + 4;
  const available = buf.length - bodyStart;
  const cl = headers.getAll('Content-Length');
  let bodyLength = available;
  if (cl.length > 0) {
    if (!/^\d{1,10}$/.test(cl[0])) throw new SipParseError(`bad Content-Length '${cl[0]}'`, 'BAD_CONTENT_LENGTH');
    bodyLength = Number(cl[0]);
    if (bodyLength > available) {
      throw new SipParseError(`Content-Length ${bodyLength} but only ${available} body bytes`, 'BODY_TRUNCATED');
    }
  }
  const body = buf.toString('utf8', bodyStart, bodyStart + bodyLength);

  let message: SipMessage;
  const status = /^SIP\/(\d+\.\d+) (\d{3})(?: (.*))?$/.exec(startLine);
  if (startLine.startsWith('SIP/')) {
    if (!status) throw new SipParseError(`bad status line '${clip(startLine)}'`, 'BAD_START_LINE');
    if (status[1] !== '2.0') throw new SipParseError(`unsupported version SIP/${status[1]}`, 'BAD_VERSION');
    const code = Number(status[2]);
    if (code < 100 || code > 699) throw new SipParseError(`status ${code} out of range`, 'BAD_START_LINE');
    message = { kind: 'response', status: code, reason: status[3] ?? '', headers, body };
  } else {
    const req = /^(\S+) (\S+) SIP\/(\d+\.\d+)$/.exec(startLine);
    if (!req) throw new SipParseError(`bad request line '${clip(startLine)}'`, 'BAD_START_LINE');
    if (!TOKEN.test(req[1])) throw new SipParseError(`bad method '${clip(req[1])}'`, 'BAD_START_LINE');
    if (!URI.test(req[2])) throw new SipParseError(`bad Request-URI '${clip(req[2])}'`, 'BAD_START_LINE');
    if (req[3] !== '2.0') throw new SipParseError(`unsupported version SIP/${req[3]}`, 'BAD_VERSION');
    message = { kind: 'request', method: req[1], uri: req[2], headers, body };
  }
  validate(message);
  return message;
}

function clip(s: string): string {
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
}

function parseHeaderLines(lines: string[]): SipHeaders {
  const raw: Array<[string, string]> = [];
  for (const line of lines) {
    if (line.includes('\r') || line.includes('\n')) {
      throw new SipParseError('bare CR or LF inside the header section', 'BAD_HEADER');
    }
    if (line.startsWith(' ') || line.startsWith('\t')) {
      // §7.3.1: a line starting with whitespace continues the previous header (folding).
      const last = raw.at(-1);
      if (!last) throw new SipParseError('continuation line before any header', 'BAD_HEADER');
      last[1] = `${last[1]} ${line.trim()}`.trim();
      continue;
    }
    const colon = line.indexOf(':');
    if (colon < 0) throw new SipParseError(`header line without colon '${clip(line)}'`, 'BAD_HEADER');
    const name = line.slice(0, colon).replace(/[ \t]+$/, '');
    if (!TOKEN.test(name)) throw new SipParseError(`bad header name '${clip(name)}'`, 'BAD_HEADER');
    raw.push([name, line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '')]);
  }
  const headers = new SipHeaders();
  for (const [name, value] of raw) {
    const canonical = canonicalHeaderName(name);
    if (LIST_HEADERS.has(canonical.toLowerCase()) && value !== '*') {
      const parts = splitList(value);
      if (parts.some((p) => p === '')) {
        throw new SipParseError(`empty element in ${canonical} '${clip(value)}'`, canonical === 'Via' ? 'BAD_VIA' : 'BAD_HEADER');
      }
    }
    headers.append(canonical, value);
  }
  return headers;
}

function validate(m: SipMessage): void {
  const h = m.headers;
  for (const name of MANDATORY_HEADERS) {
    if (!h.has(name)) throw new SipParseError(`missing ${name}`, 'MISSING_HEADER');
  }
  for (const name of SINGLE_HEADERS) {
    if (h.getAll(name).length > 1) throw new SipParseError(`more than one ${name}`, 'DUPLICATE_HEADER');
  }
  for (const via of h.getAll('Via')) parseVia(via);
  for (const name of ['From', 'To']) {
    try {
      parseNameAddr(h.get(name)!);
    } catch (err) {
      throw new SipParseError(`bad ${name}: ${(err as Error).message}`, 'BAD_NAME_ADDR');
    }
  }
  for (const contact of h.getAll('Contact')) if (contact !== '*') parseNameAddr(contact);
  const callId = h.get('Call-ID')!;
  if (callId === '' || /\s/.test(callId)) throw new SipParseError(`bad Call-ID '${clip(callId)}'`, 'BAD_CALL_ID');
  const cseq = parseCSeq(h.get('CSeq')!);
  if (m.kind === 'request' && cseq.method !== m.method) {
    // RFC 3261 §8.1.1.5: the CSeq method MUST match the request method (RFC 4475 §3.1.2.13).
    throw new SipParseError(`CSeq method ${cseq.method} does not match ${m.method}`, 'CSEQ_MISMATCH');
  }
  const mf = h.get('Max-Forwards');
  if (mf !== undefined && (!/^\d+$/.test(mf) || Number(mf) > 255)) {
    // §25.1: Max-Forwards is 1*DIGIT and RFC 4475 §3.1.2.4 treats values above 255 as invalid.
    throw new SipParseError(`bad Max-Forwards '${clip(mf)}'`, 'BAD_MAX_FORWARDS');
  }
}

/** Parameters of a header or URI: names lowercased, `true` for a parameter without value. */
export type SipParams = Record<string, string | true>;

/** A parsed name-addr or addr-spec (RFC 3261 §20.10, §25.1). */
export interface NameAddr {
  displayName?: string;
  uri: string;
  params: SipParams;
}

/** Parse `"Name" <uri>;p=v`, `Name <uri>`, `<uri>` or `uri;p=v` (§20.10: then params are header params). */
export function parseNameAddr(value: string): NameAddr {
  const v = value.trim();
  let displayName: string | undefined;
  let uri: string;
  let rest: string;
  let i = 0;
  if (v.startsWith('"')) {
    const q = readQuoted(v, 0);
    displayName = q.text;
    i = q.end;
    while (v[i] === ' ' || v[i] === '\t') i++;
    if (v[i] !== '<') throw new SipParseError(`expected '<' after display name in '${clip(v)}'`, 'BAD_NAME_ADDR');
  } else {
    const lt = v.indexOf('<');
    const semi = v.indexOf(';');
    if (lt >= 0 && (semi < 0 || lt < semi)) {
      const name = v.slice(0, lt).trim();
      if (name !== '' && !name.split(/[ \t]+/).every((t) => TOKEN.test(t))) {
        throw new SipParseError(`bad display name '${clip(name)}'`, 'BAD_NAME_ADDR');
      }
      if (name !== '') displayName = name;
      i = lt;
    } else {
      i = -1;
    }
  }
  if (i >= 0) {
    const gt = v.indexOf('>', i);
    if (gt < 0) throw new SipParseError(`unterminated '<' in '${clip(v)}'`, 'BAD_NAME_ADDR');
    uri = v.slice(i + 1, gt).trim();
    rest = v.slice(gt + 1);
  } else {
    const semi = v.indexOf(';');
    uri = (semi < 0 ? v : v.slice(0, semi)).trim();
    rest = semi < 0 ? '' : v.slice(semi);
  }
  if (!URI.test(uri)) throw new SipParseError(`bad URI '${clip(uri)}'`, 'BAD_NAME_ADDR');
  const params = parseParams(rest, 'BAD_NAME_ADDR');
  return displayName === undefined ? { uri, params } : { displayName, uri, params };
}

function readQuoted(s: string, at: number): { text: string; end: number } {
  let text = '';
  for (let i = at + 1; i < s.length; i++) {
    const ch = s[i];
    if (ch === '\\') {
      // §25.1 quoted-pair: "\" followed by any octet but CR and LF.
      if (i + 1 >= s.length) break;
      text += s[++i];
    } else if (ch === '"') {
      return { text, end: i + 1 };
    } else {
      text += ch;
    }
  }
  throw new SipParseError(`unterminated quoted string in '${clip(s)}'`, 'BAD_NAME_ADDR');
}

/** Parse `;name[=value]` parameters; whitespace around ';' and '=' is allowed (§25.1 SEMI, EQUAL). */
export function parseParams(rest: string, code = 'BAD_PARAMS'): SipParams {
  const params: SipParams = {};
  const trimmed = rest.trim();
  if (trimmed === '') return params;
  if (!trimmed.startsWith(';')) throw new SipParseError(`unexpected '${clip(trimmed)}' before parameters`, code);
  const parts: string[] = [];
  let quoted = false;
  let from = 1;
  for (let i = 1; i <= trimmed.length; i++) {
    const ch = trimmed[i];
    if (i === trimmed.length || (!quoted && ch === ';')) {
      parts.push(trimmed.slice(from, i).trim());
      from = i + 1;
    } else if (quoted && ch === '\\') i++;
    else if (ch === '"') quoted = !quoted;
  }
  if (quoted) throw new SipParseError('unterminated quoted parameter value', code);
  for (const part of parts) {
    if (part === '') throw new SipParseError(`empty parameter in '${clip(trimmed)}'`, code);
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim();
    if (!TOKEN.test(name)) throw new SipParseError(`bad parameter name '${clip(name)}'`, code);
    if (eq < 0) {
      params[name.toLowerCase()] = true;
      continue;
    }
    const val = part.slice(eq + 1).trim();
    if (val === '') throw new SipParseError(`parameter '${name}' has '=' but no value`, code);
    params[name.toLowerCase()] = val;
  }
  return params;
}

/** A parsed Via value (RFC 3261 §20.42). */
export interface Via {
  /** e.g. `SIP/2.0` */
  protocol: string;
  /** Upper case, e.g. `UDP`. */
  transport: string;
  host: string;
  port?: number;
  params: SipParams;
}

/** Parse one Via element `SIP/2.0/UDP host[:port];params`; LWS around '/' and ':' is allowed (§25.1). */
export function parseVia(value: string): Via {
  const m = /^([A-Za-z0-9\-.!%*_+`'~]+)\s*\/\s*([0-9]+\.[0-9]+)\s*\/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+([^;]*?)\s*(;.*)?$/s.exec(
    value.trim(),
  );
  if (!m) throw new SipParseError(`bad Via '${clip(value)}'`, 'BAD_VIA');
  const sentBy = m[4].replace(/\s*:\s*/g, ':');
  const hp = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?::(\d{1,5}))?$/.exec(sentBy);
  if (!hp) throw new SipParseError(`bad Via sent-by '${clip(sentBy)}'`, 'BAD_VIA');
  const port = hp[2] === undefined ? undefined : Number(hp[2]);
  if (port !== undefined && (port < 1 || port > 65535)) throw new SipParseError(`bad Via port ${port}`, 'BAD_VIA');
  const params = parseParams(m[5] ?? '', 'BAD_VIA');
  const via: Via = { protocol: `${m[1].toUpperCase()}/${m[2]}`, transport: m[3].toUpperCase(), host: hp[1], params };
  if (port !== undefined) via.port = port;
  return via;
}

/** Serialize a Via back to `SIP/2.0/UDP host:port;params`. */
export function formatVia(via: Via): string {
  return `${via.protocol}/${via.transport} ${via.host}${via.port === undefined ? '' : `:${via.port}`}${formatParams(via.params)}`;
}

/** Serialize parameters as `;name=value;flag`. */
export function formatParams(params: SipParams): string {
  return Object.entries(params)
    .map(([k, v]) => (v === true ? `;${k}` : `;${k}=${v}`))
    .join('');
}

/** A parsed CSeq (RFC 3261 §20.16). */
export interface CSeq {
  seq: number;
  method: string;
}

/** Parse `CSeq: 4711 INVITE`; the number must be below 2**31 (§8.1.1.5). */
export function parseCSeq(value: string): CSeq {
  const m = /^(\d{1,10})\s+(\S+)$/.exec(value.trim());
  if (!m || !TOKEN.test(m[2])) throw new SipParseError(`bad CSeq '${clip(value)}'`, 'BAD_CSEQ');
  const seq = Number(m[1]);
  if (seq > 0x7fffffff) throw new SipParseError(`CSeq ${m[1]} is not below 2**31`, 'BAD_CSEQ');
  return { seq, method: m[2] };
}

/** The `tag` parameter of a From/To value, or undefined. */
export function tagOf(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const tag = parseNameAddr(value).params.tag;
  return typeof tag === 'string' ? tag : undefined;
}

/** Serialize a message; Content-Length is always rewritten from the body (RFC 3261 §20.14). */
export function serializeSip(m: SipMessage): Buffer {
  const body = Buffer.from(m.body, 'utf8');
  const startLine = m.kind === 'request' ? `${m.method} ${m.uri} SIP/2.0` : `SIP/2.0 ${m.status} ${m.reason}`;
  const lines = [startLine];
  let wroteLength = false;
  for (const [name, value] of m.headers) {
    if (name === 'Content-Length') {
      if (!wroteLength) lines.push(`Content-Length: ${body.length}`);
      wroteLength = true;
    } else {
      lines.push(`${name}: ${value}`);
    }
  }
  if (!wroteLength) lines.push(`Content-Length: ${body.length}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'utf8'), body]);
}

/** Options of makeResponse(). */
export interface ResponseOptions {
  /** Added to To when the request has no To tag (§8.2.6.2). */
  toTag?: string;
  /** Extra headers, appended in order. */
  headers?: Array<[string, string]>;
  body?: string;
  /** Content-Type of the body. */
  contentType?: string;
}

/**
 * Build a response to `req` (RFC 3261 §8.2.6): Via (all, in order), From, Call-ID, CSeq copied,
 * To copied with our tag added; Timestamp echoed on 100 (§8.2.6.1); Record-Route copied into a
 * dialog-creating INVITE response (§12.1.1).
 */
export function makeResponse(req: SipRequest, status: number, reason: string, opts: ResponseOptions = {}): SipResponse {
  const h = new SipHeaders();
  for (const via of req.headers.getAll('Via')) h.append('Via', via);
  h.append('From', req.headers.get('From') ?? '');
  let to = req.headers.get('To') ?? '';
  if (opts.toTag !== undefined && status > 100 && tagOf(to) === undefined) to = `${to};tag=${opts.toTag}`;
  h.append('To', to);
  h.append('Call-ID', req.headers.get('Call-ID') ?? '');
  h.append('CSeq', req.headers.get('CSeq') ?? '');
  if (status === 100) {
    const ts = req.headers.get('Timestamp');
    if (ts !== undefined) h.append('Timestamp', ts);
  }
  if (req.method === 'INVITE' && status > 100 && status < 300) {
    for (const rr of req.headers.getAll('Record-Route')) h.append('Record-Route', rr);
  }
  for (const [n, v] of opts.headers ?? []) h.append(n, v);
  const body = opts.body ?? '';
  if (opts.contentType !== undefined) h.set('Content-Type', opts.contentType);
  return { kind: 'response', status, reason, headers: h, body };
}

/** Default reason phrases (RFC 3261 §21). */
export const REASON_PHRASES: Readonly<Record<number, string>> = {
  100: 'Trying', 180: 'Ringing', 181: 'Call Is Being Forwarded', 182: 'Queued', 183: 'Session Progress',
  200: 'OK', 202: 'Accepted', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 408: 'Request Timeout', 413: 'Request Entity Too Large', 415: 'Unsupported Media Type',
  416: 'Unsupported URI Scheme', 420: 'Bad Extension', 480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist', 482: 'Loop Detected', 483: 'Too Many Hops', 486: 'Busy Here',
  487: 'Request Terminated', 488: 'Not Acceptable Here', 491: 'Request Pending', 500: 'Server Internal Error',
  501: 'Not Implemented', 503: 'Service Unavailable', 504: 'Server Time-out', 505: 'Version Not Supported',
  513: 'Message Too Large', 600: 'Busy Everywhere', 603: 'Decline', 604: 'Does Not Exist Anywhere',
  606: 'Not Acceptable',
};

/** What salvageSip() could read from a message parseSip() rejected. */
export interface SalvagedMessage {
  startLine: string;
  headers: SipHeaders;
}

/**
 * Read the start line and headers of a malformed datagram without validating them, so a UAS can
 * still address a 400 (RFC 3261 §8.2: the response needs Via, From, To, Call-ID, CSeq).
 * Returns undefined when not even that much is readable.
 */
export function salvageSip(buf: Buffer): SalvagedMessage | undefined {
  const text = buf.subarray(0, MAX_SIP_MESSAGE_BYTES).toString('utf8');
  const endAt = text.indexOf('\r\n\r\n');
  const lines = (endAt < 0 ? text : text.slice(0, endAt)).replace(/^(\r\n)+/, '').split(/\r\n/);
  const startLine = lines[0] ?? '';
  const headers = new SipHeaders();
  let last: [string, string] | undefined;
  const raw: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    if ((line.startsWith(' ') || line.startsWith('\t')) && last) {
      last[1] = `${last[1]} ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    if (!TOKEN.test(name)) continue;
    last = [name, line.slice(colon + 1).trim()];
    raw.push(last);
  }
  for (const [n, v] of raw) headers.append(n, v);
  if (!/^\S+ \S+ SIP\/\d+\.\d+$|^SIP\//.test(startLine) && headers.size === 0) return undefined;
  return { startLine, headers };
}

/**
 * The 400 Bad Request owed to a malformed datagram (RFC 3261 §8.2), built from what
 * `salvageSip` could read: undefined when nothing can be answered — no request line, an ACK,
 * or no Via to send the answer along (§17.1.1.3). `toTag` is used when the To has no tag.
 */
export function badRequestFor(buf: Buffer, reason: string, opts: { server: string; toTag: () => string }): SipResponse | undefined {
  const salvaged = salvageSip(buf);
  if (!salvaged) return undefined;
  const method = /^(\S+) \S+ SIP\//.exec(salvaged.startLine)?.[1];
  const vias = salvaged.headers.getAll('Via');
  if (!method || method === 'ACK' || vias.length === 0) return undefined;
  const h = new SipHeaders();
  for (const v of vias) h.append('Via', v);
  for (const n of ['From', 'To', 'Call-ID', 'CSeq']) {
    const v = salvaged.headers.get(n);
    if (v !== undefined) h.append(n, n === 'To' && !/;\s*tag\s*=/i.test(v) ? `${v};tag=${opts.toTag()}` : v);
  }
  h.append('Server', opts.server);
  h.append('Warning', `399 jitcast "${reason.replace(/["\\\r\n]/g, "'").slice(0, 200)}"`);
  return { kind: 'response', status: 400, reason: 'Bad Request', headers: h, body: '' };
}
