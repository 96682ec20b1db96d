/**
 * Request bodies of the REST API: JSON or XML in, the same plain object out; XML out for clients that
 * ask for it. Hostile input is refused early: size is capped while reading (413), DOCTYPE and entity
 * declarations are refused outright (no billion-laughs, no external entities), nesting and element
 * counts are capped before the parser sees the text.
 */
import type { IncomingMessage } from 'node:http';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { MalformedBodyError, PayloadTooLargeError, UnsupportedMediaTypeError, type FieldErrors } from './errors.ts';

/** Deepest XML nesting accepted. */
export const MAX_XML_DEPTH = 32;
/** Most XML elements accepted in one body. */
export const MAX_XML_ELEMENTS = 1000;
/** Fields whose XML text is coerced to a number; every other field stays a string. */
export const NUMERIC_FIELDS: ReadonlySet<string> = new Set(['archiveDays']);
/** Fields whose XML text is coerced to a boolean (`true` / `false`). */
export const BOOLEAN_FIELDS: ReadonlySet<string> = new Set(['hasPassword']);

/** A parsed body and the syntax it came in. */
export interface ParsedBody {
  kind: 'json' | 'xml';
  value: unknown;
}

/** The media type of a Content-Type header, lower case, without parameters. */
export function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Which body syntax a Content-Type names, or undefined for one the API does not speak. */
export function bodyKind(contentType: string | undefined): 'json' | 'xml' | undefined {
  const t = mediaType(contentType);
  if (t === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(t)) return 'json';
  if (t === 'application/xml' || t === 'text/xml' || /^application\/[a-z0-9.+-]+\+xml$/.test(t)) return 'xml';
  return undefined;
}

/**
 * Reads a request body up to `maxBytes`. Rejects with PayloadTooLargeError as soon as the declared
 * length or the bytes read pass the cap; the rest is drained unbuffered so the connection can still
 * carry the 413 answer.
 */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // Past this much discarded input the connection is cut: a 413 must not cost unbounded reading.
    const discardLimit = Math.max(maxBytes * 16, 4 * 1024 * 1024);
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const tooLarge = () => {
      done = true;
      chunks.length = 0;
      reject(new PayloadTooLargeError(maxBytes));
    };
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (done) {
        if (size > discardLimit) req.destroy();
        return;
      }
      if (size > maxBytes) tooLarge();
      else chunks.push(chunk);
    });
    req.once('end', () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks, size));
    });
    req.once('error', (err) => {
      if (done) return;
      done = true;
      reject(new MalformedBodyError(`request body could not be read: ${err.message}`));
    });
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBytes) tooLarge();
  });
}

/** Parses a body by its Content-Type; an empty body is `undefined`. */
export function parseBody(raw: Buffer | string, contentType: string | undefined, maxBytes = Infinity): ParsedBody | undefined {
  const size = typeof raw === 'string' ? Buffer.byteLength(raw) : raw.length;
  if (size > maxBytes) throw new PayloadTooLargeError(maxBytes);
  const text = typeof raw === 'string' ? raw : raw.toString('utf8');
  if (text.trim() === '') return undefined;
  const kind = bodyKind(contentType);
  if (!kind) throw new UnsupportedMediaTypeError(mediaType(contentType) || '(none)');
  return kind === 'json' ? { kind, value: parseJson(text) } : { kind, value: parseXml(text) };
}

/**
 * Reads and parses a request body: 415 for a Content-Type the API does not speak (checked before any
 * byte is read), 413 past `maxBytes`, 400 when malformed.
 */
export async function parseRequestBody(req: IncomingMessage, maxBytes: number): Promise<ParsedBody | undefined> {
  const contentType = req.headers['content-type'];
  const length = req.headers['content-length'];
  const hasBody = req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
  if (!hasBody) return undefined;
  if (!bodyKind(contentType)) {
    req.resume();
    throw new UnsupportedMediaTypeError(mediaType(contentType) || '(none)');
  }
  return parseBody(await readBody(req, maxBytes), contentType, maxBytes);
}

/** JSON.parse with a message saying what went wrong and where (line and column). */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text, (key, value: unknown) => {
      // Object.assign further on would turn such a key into a prototype.
      if (key === '__proto__') throw new MalformedBodyError(`JSON body field "__proto__" is not accepted`);
      return value;
    });
  } catch (err) {
    if (err instanceof MalformedBodyError) throw err;
    const msg = (err as Error).message;
    const pos = /position (\d+)/.exec(msg);
    let where = '';
    if (pos) {
      const upTo = text.slice(0, Number(pos[1]));
      const line = upTo.split('\n').length;
      const col = Number(pos[1]) - upTo.lastIndexOf('\n');
      where = ` at line ${line} column ${col}`;
    }
    throw new MalformedBodyError(`malformed JSON body${where}: ${msg}`);
  }
}

function lineCol(text: string, index: number): string {
  const upTo = text.slice(0, index);
  return `line ${upTo.split('\n').length} column ${index - upTo.lastIndexOf('\n')}`;
}

/**
 * Counts elements and nesting without recursion, so a 64 KB body of `<a><a><a>…` is refused before
 * any recursive code runs; also finds DOCTYPE and ENTITY declarations, which are never accepted.
 */
function prescanXml(text: string): void {
  const decl = /<!(DOCTYPE|ENTITY)/i.exec(text);
  if (decl) {
    throw new MalformedBodyError(
      `XML <!${decl[1]!.toUpperCase()}> declarations are not accepted (${lineCol(text, decl.index)}): send the document without a DTD; only the five built-in entities (&amp; &lt; &gt; &quot; &apos;) are understood`,
    );
  }
  let depth = 0;
  let elements = 0;
  let i = text.indexOf('<');
  while (i !== -1) {
    if (text.startsWith('<!--', i)) {
      const end = text.indexOf('-->', i + 4);
      if (end === -1) throw new MalformedBodyError(`malformed XML body: unterminated comment at ${lineCol(text, i)}`);
      i = text.indexOf('<', end + 3);
      continue;
    }
    if (text.startsWith('<![CDATA[', i)) {
      const end = text.indexOf(']]>', i + 9);
      if (end === -1) throw new MalformedBodyError(`malformed XML body: unterminated CDATA at ${lineCol(text, i)}`);
      i = text.indexOf('<', end + 3);
      continue;
    }
    // Find the end of the tag, skipping quoted attribute values.
    let j = i + 1;
    let quote = '';
    for (; j < text.length; j++) {
      const c = text[j];
      if (quote) {
        if (c === quote) quote = '';
      } else if (c === '"' || c === "'") quote = c;
      else if (c === '>') break;
    }
    if (j >= text.length) throw new MalformedBodyError(`malformed XML body: unterminated tag at ${lineCol(text, i)}`);
    const next = text[i + 1];
    if (next === '/') depth--;
    else if (next !== '?' && next !== '!') {
      elements++;
      if (text[j - 1] !== '/') depth++;
      if (depth > MAX_XML_DEPTH) throw new MalformedBodyError(`XML body nests deeper than ${MAX_XML_DEPTH} levels (${lineCol(text, i)})`);
      if (elements > MAX_XML_ELEMENTS) throw new MalformedBodyError(`XML body has more than ${MAX_XML_ELEMENTS} elements`);
    }
    i = text.indexOf('<', j + 1);
  }
}

const xmlParser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: true,
  // Only the five built-in entities: DOCTYPE is refused before parsing, HTML entities stay off.
  processEntities: true,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  commentPropName: false,
  maxNestedTags: MAX_XML_DEPTH + 1,
});

function coerce(name: string, value: unknown): unknown {
  if (Array.isArray(value)) return value.map((v) => coerce(name, v));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = coerce(k, v);
    return out;
  }
  if (typeof value === 'string') {
    // Numbers only where the contract has a number, so a title of "2024" stays a string.
    if (NUMERIC_FIELDS.has(name) && /^-?\d+(\.\d+)?$/.test(value.trim())) return Number(value);
    if (BOOLEAN_FIELDS.has(name) && (value === 'true' || value === 'false')) return value === 'true';
  }
  return value;
}

/**
 * Parses an XML body into the object its single root element holds: `<event><title>x</title></event>`
 * → `{title: 'x'}`. An empty root is `{}`.
 */
export function parseXml(text: string): unknown {
  prescanXml(text);
  const check = XMLValidator.validate(text);
  if (check !== true) {
    throw new MalformedBodyError(`malformed XML body at line ${check.err.line} column ${check.err.col}: ${check.err.msg}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = xmlParser.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new MalformedBodyError(`malformed XML body: ${(err as Error).message}`);
  }
  const roots = Object.keys(doc);
  if (roots.length !== 1) throw new MalformedBodyError(`malformed XML body: expected one root element, found ${roots.length}`);
  const root = doc[roots[0]!];
  if (Array.isArray(root)) throw new MalformedBodyError('malformed XML body: expected one root element, found several');
  if (root === '' || root === undefined) return {};
  return coerce(roots[0]!, root);
}

/** Escapes text for XML element content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

const XML_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** `streams` → `stream`, `entries` → `entry`: the element name of one item in a list. */
function singular(name: string): string {
  if (name.endsWith('ies')) return name.slice(0, -3) + 'y';
  if (name.endsWith('s') && name.length > 1) return name.slice(0, -1);
  return 'item';
}

function element(name: string, value: unknown, indent: string): string {
  if (value === undefined || value === null || typeof value === 'function') return '';
  const safe = XML_NAME.test(name) && !/^xml/i.test(name);
  const open = safe ? name : `item key="${escapeXml(name)}"`;
  const close = safe ? name : 'item';
  if (Array.isArray(value)) {
    const inner = value.map((v) => element(singular(name), v, indent + '  ')).join('');
    return inner ? `${indent}<${open}>\n${inner}${indent}</${close}>\n` : `${indent}<${open}/>\n`;
  }
  if (value instanceof Date) return `${indent}<${open}>${value.toISOString()}</${close}>\n`;
  if (typeof value === 'object') {
    const inner = Object.entries(value as Record<string, unknown>).map(([k, v]) => element(k, v, indent + '  ')).join('');
    return inner ? `${indent}<${open}>\n${inner}${indent}</${close}>\n` : `${indent}<${open}/>\n`;
  }
  return `${indent}<${open}>${escapeXml(String(value))}</${close}>\n`;
}

/**
 * Serializes a value as an XML document: object keys become elements, a list `streams` becomes
 * `<streams><stream>…</stream></streams>`, null and undefined are left out.
 */
export function toXml(rootName: string, value: unknown): string {
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + (element(rootName, value, '') || `<${rootName}/>\n`);
}

/** An API error as XML: `<error><code/><message/><fields><field name="title">…</field></fields></error>`. */
export function errorToXml(code: string, message: string, fields?: FieldErrors): string {
  let out = `<?xml version="1.0" encoding="UTF-8"?>\n<error>\n  <code>${escapeXml(code)}</code>\n  <message>${escapeXml(message)}</message>\n`;
  if (fields && Object.keys(fields).length > 0) {
    out += '  <fields>\n';
    for (const [name, msg] of Object.entries(fields)) out += `    <field name="${escapeXml(name)}">${escapeXml(msg)}</field>\n`;
    out += '  </fields>\n';
  }
  return out + '</error>\n';
}

/**
 * Whether an Accept header prefers XML over JSON. Only an explicit XML media type counts; wildcards
 * mean JSON. On equal quality the one listed first wins.
 */
export function prefersXml(accept: string | undefined): boolean {
  if (!accept) return false;
  let xml = { q: 0, at: Infinity };
  let json = { q: 0, at: Infinity };
  accept.split(',').forEach((part, at) => {
    const [type, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    const qParam = params.find((p) => p.startsWith('q='));
    const q = qParam ? Number(qParam.slice(2)) : 1;
    if (!Number.isFinite(q)) return;
    if (type === 'application/xml' || type === 'text/xml') {
      if (q > xml.q) xml = { q, at };
    } else if (type === 'application/json' || type === 'application/*' || type === '*/*') {
      if (q > json.q) json = { q, at };
    }
  });
  return xml.q > 0 && (xml.q > json.q || (xml.q === json.q && xml.at < json.at));
}
