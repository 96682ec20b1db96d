/**
 * HTTP for specs: one request to a gateway, answered as status, headers, raw text and the body
 * parsed as JSON (undefined when it is not JSON). Plain `http:` URLs go through fetch; `https:`
 * URLs go through node:https so a spec can trust its own self-signed certificate (`ca`) or, when
 * it only cares that TLS is spoken, accept any certificate (`insecure`).
 */
import https from 'node:https';

export interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: any;
  /** True when the answer came over TLS. */
  tls: boolean;
}

export interface HttpOptions {
  body?: string | Buffer;
  headers?: Record<string, string>;
  /** Aborts the request after this many milliseconds. */
  timeoutMs?: number;
  /** https only: the certificate authority to trust (e.g. the spec's self-signed certificate). */
  ca?: string | Buffer;
  /** https only: the name to check the certificate against when the URL names an IP address. */
  servername?: string;
  /** https only: accept any certificate (rejectUnauthorized: false). */
  insecure?: boolean;
}

/** `text` parsed as JSON, or undefined when it is not JSON. */
export function parseJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** One request to `url` (http: or https:). */
export async function httpRequest(method: string, url: string, o: HttpOptions = {}): Promise<HttpAnswer> {
  const signal = o.timeoutMs ? AbortSignal.timeout(o.timeoutMs) : undefined;
  if (url.startsWith('https:')) return httpsRequest(method, new URL(url), o, signal);
  const res = await fetch(url, { method, headers: o.headers, body: o.body as BodyInit | undefined, signal });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: parseJson(text), tls: false };
}

function httpsRequest(method: string, url: URL, o: HttpOptions, signal: AbortSignal | undefined): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method,
        headers: o.headers,
        ca: o.ca,
        servername: o.servername,
        rejectUnauthorized: o.insecure !== true,
        agent: false,
        signal,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) {
            for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) headers.append(k, one);
          }
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers, text, json: parseJson(text), tls: (res.socket as { encrypted?: boolean }).encrypted === true });
        });
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

/**
 * Calls a gateway's `/api` with `apiKey` as the bearer token. A string body is sent as is, anything
 * else as JSON; with a body, content-type defaults to application/json. `headers` override the
 * defaults whatever their letter case.
 */
export function apiRequest(
  baseUrl: string,
  apiKey: string,
  method: string,
  path: string,
  body?: unknown,
  o: { headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<HttpAnswer> {
  const headers: Record<string, string> = { authorization: `Bearer ${apiKey}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  for (const [k, v] of Object.entries(o.headers ?? {})) headers[k.toLowerCase()] = v;
  const payload = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  return httpRequest(method, baseUrl + path, { body: payload, headers, timeoutMs: o.timeoutMs });
}
