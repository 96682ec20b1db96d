/**
 * `gateway` actor: the HTTP server (moleculer-web as a mixin) on `httpHost:httpPort`.
 * - `/api/*`: REST for reservations (Bearer API key, JSON or XML bodies parsed by runtime/http-body.ts,
 *   JSON or XML answers, errors as `{error: {code, message, fields?}}`), plus `GET /api/cluster` and
 *   `POST /api/cluster/voice-servers/:nodeId/drain` / `…/resume` (maintenance of one voice server).
 * - `/e/:token…`, `/s/:streamId/:file`, `/a/:streamId/:file`: attendee access, no API key.
 * - `/vendor/hls.min.js` and `/healthz`.
 * The gateway owns its http.Server (moleculer-web's own would print on start and exit the process on
 * EADDRINUSE); a port in use fails the service start instead.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from 'moleculer';
import ApiGateway from 'moleculer-web';
import type { JitcastConfig } from '../cluster.config.ts';
import { collectClusterStatus } from '../runtime/cluster-status.ts';
import type { FieldErrors } from '../runtime/errors.ts';
import { NotFoundError, UnauthorizedError, ValidationFailedError } from '../runtime/errors.ts';
import { errorToXml, parseRequestBody, prefersXml, toXml } from '../runtime/http-body.ts';

/** Header the player page sends for password-protected events (attendee-access reads it from meta). */
const PASSWORD_HEADER = 'x-event-password';

/** A request as moleculer-web hands it around, with what the gateway adds. */
type GatewayRequest = IncomingMessage & {
  $params?: Record<string, unknown>;
  $alias?: { action?: string };
  $ctx?: Context<unknown, Record<string, unknown>>;
  body?: unknown;
  query?: Record<string, unknown>;
  /** Syntax of the parsed body, so an XML client gets XML back even without Accept. */
  $bodyKind?: 'json' | 'xml';
  /** Fingerprint of the API key that authenticated the request. */
  $apiKeyId?: string;
  originalUrl?: string;
};

type GatewayService = Service & { server?: http.Server; httpHandler(req: IncomingMessage, res: ServerResponse): void };

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Root element names of XML answers, by action. */
const XML_ROOT: Record<string, string> = {
  'reservation.list': 'events',
  'gateway.cluster': 'cluster',
  'gateway.drainVoiceServer': 'voiceServer',
  'gateway.resumeVoiceServer': 'voiceServer',
};

const PARAMS_OF_ATTENDEE_ACTION: Record<string, readonly string[]> = {
  'attendee-access.page': ['token'],
  'attendee-access.status': ['token'],
  'attendee-access.live': ['token'],
  'attendee-access.archive': ['token'],
  'attendee-access.liveFile': ['streamId', 'file', 'a'],
  'attendee-access.archiveFile': ['streamId', 'file', 'a'],
};

/** Whether the answer to this request should be XML. */
function wantsXml(req: GatewayRequest): boolean {
  const accept = req.headers.accept;
  if (prefersXml(accept)) return true;
  // An XML body with no explicit wish for JSON gets XML back.
  return req.$bodyKind === 'xml' && !/json/i.test(accept ?? '');
}

/** The path for logs, with attendee tokens and auth codes cut short. */
function logPath(url: string | undefined): string {
  return (url ?? '').split('?')[0]!.replace(/^\/e\/([^/]{8})[^/]*/, '/e/$1…');
}

/** Writes an error in the API's shape: `{error: {code, message, fields?}}` or its XML form. */
function sendError(service: Service, req: GatewayRequest, res: ServerResponse, err: unknown, xml: boolean): void {
  const e = (err ?? {}) as { code?: unknown; type?: unknown; message?: unknown; data?: { fields?: FieldErrors; retryAfterS?: number } };
  const status = typeof e.code === 'number' && e.code >= 400 && e.code <= 599 ? e.code : 500;
  let code = typeof e.type === 'string' && e.type ? e.type : 'INTERNAL_ERROR';
  let message = typeof e.message === 'string' ? e.message : 'error';
  const fields = status === 400 ? e.data?.fields : undefined;
  if (status >= 500) {
    // Details stay in the log; the client learns only that it was not its fault.
    service.logger.error(`request failed [${req.method} ${logPath(req.originalUrl ?? req.url)} status:${status}]`, err);
    if (status === 500) code = 'INTERNAL_ERROR';
    message = status === 503 ? 'service temporarily unavailable, try again' : 'internal error';
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (status === 401) res.setHeader('WWW-Authenticate', 'Bearer realm="jitcast"');
  if (status === 429 && e.data?.retryAfterS) res.setHeader('Retry-After', String(e.data.retryAfterS));
  res.setHeader('Cache-Control', 'no-store');
  const body = xml
    ? errorToXml(code, message, fields)
    : JSON.stringify({ error: { code, message, ...(fields ? { fields } : {}) } });
  res.setHeader('Content-Type', xml ? 'application/xml; charset=utf-8' : 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.writeHead(status);
  res.end(body);
}

/** The `gateway` service. */
export function createGatewayService(config: JitcastConfig): ServiceSchema {
  const keyHashes = config.apiKeys.map(sha256);
  const hlsPath = createRequire(import.meta.url).resolve('hls.js/dist/hls.min.js');
  let hlsJs: Buffer | undefined;

  /** Constant-time API key check: hashing first makes every comparison the same length. */
  function apiKeyId(header: string | undefined): string | undefined {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
    if (!m) return undefined;
    const h = sha256(m[1]!);
    let ok = false;
    for (const k of keyHashes) ok = timingSafeEqual(h, k) || ok;
    return ok ? h.subarray(0, 8).toString('hex') : undefined;
  }

  /** `/api` middleware: API key first (nothing is read for a stranger), then the body. */
  function apiMiddleware(this: Service, req: GatewayRequest, _res: ServerResponse, next: (err?: unknown) => void): void {
    const id = apiKeyId(req.headers.authorization);
    if (!id) {
      // Leave the body unread; Node drains it so the 401 can still be sent on this connection.
      next(new UnauthorizedError());
      return;
    }
    req.$apiKeyId = id;
    parseRequestBody(req, config.maxBodyBytes).then(
      (parsed) => {
        if (parsed) {
          req.$bodyKind = parsed.kind;
          const v = parsed.value;
          if (v === null || typeof v !== 'object' || Array.isArray(v)) {
            next(new ValidationFailedError('request body must be an object', { body: 'must be an object' }));
            return;
          }
          req.body = v;
        }
        next();
      },
      (err) => next(err),
    );
  }

  const settings = {
    // The gateway runs its own http.Server (see created/started).
    server: false,
    port: config.httpPort,
    ip: config.httpHost,
    logRequest: null,
    logRequestParams: null,
    logResponse: null,
    logRouteRegistration: null,
    log4XXResponses: false,

    routes: [
      {
        name: 'api',
        path: '/api',
        bodyParsers: false,
        mappingPolicy: 'restrict',
        use: [apiMiddleware],
        aliases: {
          'POST /events': 'reservation.create',
          'GET /events': 'reservation.list',
          'GET /events/:eventId': 'reservation.get',
          'PATCH /events/:eventId': 'reservation.update',
          'DELETE /events/:eventId': 'reservation.cancel',
          'POST /events/:eventId/end': 'reservation.end',
          'POST /events/:eventId/archive/retry': 'reservation.retryArchive',
          'GET /cluster': 'gateway.cluster',
          'POST /cluster/voice-servers/:nodeId/drain': 'gateway.drainVoiceServer',
          'POST /cluster/voice-servers/:nodeId/resume': 'gateway.resumeVoiceServer',
        },
        onBeforeCall(ctx: Context<unknown, Record<string, unknown>>, _route: unknown, req: GatewayRequest) {
          ctx.meta.apiKey = req.$apiKeyId;
          // Parameters come from the body and the path only; the query string carries none here.
          const params = req.$params ?? {};
          for (const k of Object.keys(req.query ?? {})) {
            if (!(req.body && Object.hasOwn(req.body as object, k)) && k !== 'eventId') delete params[k];
          }
        },
        onAfterCall(ctx: Context<unknown, Record<string, unknown>>, _route: unknown, req: GatewayRequest, res: ServerResponse, data: unknown) {
          const action = req.$alias?.action ?? '';
          res.setHeader('Cache-Control', 'no-store');
          if (action === 'reservation.create') {
            ctx.meta.$statusCode = 201;
            ctx.meta.$location = `/api/events/${(data as { eventId: string }).eventId}`;
          }
          if (!wantsXml(req)) return data;
          ctx.meta.$responseType = 'application/xml; charset=utf-8';
          return toXml(XML_ROOT[action] ?? 'event', data);
        },
        onError(this: Service, req: GatewayRequest, res: ServerResponse, err: unknown) {
          sendError(this, req, res, err, wantsXml(req));
        },
      },
      {
        name: 'web',
        path: '/',
        bodyParsers: false,
        mappingPolicy: 'restrict',
        aliases: {
          'GET /e/:token': 'attendee-access.page',
          'GET /e/:token/status.json': 'attendee-access.status',
          'GET /e/:token/live.m3u8': 'attendee-access.live',
          'GET /e/:token/archive.m3u8': 'attendee-access.archive',
          'GET /s/:streamId/:file': 'attendee-access.liveFile',
          'GET /a/:streamId/:file': 'attendee-access.archiveFile',
          'GET /healthz'(this: Service, _req: IncomingMessage, res: ServerResponse) {
            const body = JSON.stringify({ ok: true, nodeId: this.broker.nodeID });
            res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(body) });
            res.end(body);
          },
          'GET /vendor/hls.min.js'(_req: IncomingMessage, res: ServerResponse) {
            hlsJs ??= readFileSync(hlsPath);
            res.writeHead(200, {
              'Content-Type': 'text/javascript; charset=utf-8',
              'Content-Length': hlsJs.length,
              // The file changes only with an upgrade of the hls.js package.
              'Cache-Control': 'public, max-age=31536000, immutable',
            });
            res.end(hlsJs);
          },
        },
        onBeforeCall(ctx: Context<unknown, Record<string, unknown>>, _route: unknown, req: GatewayRequest) {
          // Only the parameters the attendee actions take; the auth code `a` may appear once.
          const params = req.$params ?? {};
          const keep = PARAMS_OF_ATTENDEE_ACTION[req.$alias?.action ?? ''] ?? [];
          for (const k of Object.keys(params)) {
            if (!keep.includes(k)) delete params[k];
            else if (Array.isArray(params[k])) params[k] = params[k][0];
          }
          const pw = req.headers[PASSWORD_HEADER];
          if (typeof pw === 'string') ctx.meta.eventPassword = pw;
        },
        onError(this: Service, req: GatewayRequest, res: ServerResponse, err: unknown) {
          sendError(this, req, res, err, false);
        },
      },
    ],

    // Requests no route matches.
    onError(this: Service, req: GatewayRequest, res: ServerResponse, err: unknown) {
      sendError(this, req, res, err, wantsXml(req));
    },
  };

  return {
    name: 'gateway',
    mixins: [ApiGateway as unknown as ServiceSchema],
    settings: settings as ServiceSettingSchema,

    actions: {
      cluster: {
        /** The cluster at a glance: nodes, voice servers, channels, encoder ports, live streams. */
        async handler(this: any) {
          return collectClusterStatus(this.broker);
        },
      },
      drainVoiceServer: {
        /** Maintenance: the voice server takes no new calls, lets busy channels finish, then reports drained. */
        async handler(this: any, ctx: Context<{ nodeId?: unknown }>) {
          return this.voiceServerCommand(ctx.params.nodeId, 'drain');
        },
      },
      resumeVoiceServer: {
        /** Back in service after a drain. */
        async handler(this: any, ctx: Context<{ nodeId?: unknown }>) {
          return this.voiceServerCommand(ctx.params.nodeId, 'resume');
        },
      },
    },

    methods: {
      /** Sends drain/resume to the voice server of one node: no retries, so it never lands on another node. */
      async voiceServerCommand(this: any, nodeId: unknown, command: 'drain' | 'resume') {
        if (typeof nodeId !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(nodeId)) {
          throw new ValidationFailedError('nodeId must be a node ID', { nodeId: 'must be 1-64 of A-Z a-z 0-9 _ . -' });
        }
        const list = this.broker.registry.getServiceList({ onlyAvailable: true, withActions: false }) as Array<{ name: string; nodeID: string }>;
        if (!list.some((s) => s.name === 'voice-server' && s.nodeID === nodeId)) {
          throw new NotFoundError(`no voice server on node '${nodeId}'`);
        }
        return this.broker.call(`voice-server.${command}`, {}, { nodeID: nodeId, retries: 0, timeout: 5000 });
      },
    },

    created() {
      const self = this as unknown as GatewayService;
      const server = http.createServer((req, res) => self.httpHandler(req, res));
      server.requestTimeout = 60_000;
      server.headersTimeout = 20_000;
      server.on('request', (req: IncomingMessage, res: ServerResponse) => {
        const t0 = performance.now();
        res.once('finish', () => {
          self.logger.debug(`http [${req.method} ${logPath((req as GatewayRequest).originalUrl ?? req.url)} ${res.statusCode} ${(performance.now() - t0).toFixed(1)}ms]`);
        });
      });
      self.server = server;
    },

    async started() {
      const self = this as unknown as GatewayService;
      const server = self.server!;
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error) => reject(new Error(`gateway cannot listen [${config.httpHost}:${config.httpPort}] ${err.message}`));
        server.once('error', onError);
        server.listen(config.httpPort, config.httpHost, () => {
          server.off('error', onError);
          resolve();
        });
      });
      server.on('error', (err) => self.logger.error(`http server error [${config.httpHost}:${config.httpPort}] ${err.message}`));
    },

    async stopped() {
      const server = (this as unknown as GatewayService).server;
      if (!server?.listening) return;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Keep-alive connections would hold close() open for good.
        server.closeAllConnections();
      });
    },
  };
}
