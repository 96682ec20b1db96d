/**
 * `gateway` actor: the HTTP server (moleculer-web as a mixin) on `httpHost:httpPort`.
 * - `/api/*`: REST for reservations (Bearer API key, JSON or XML bodies parsed by runtime/http-body.ts,
 *   JSON or XML answers, errors as `{error: {code, message, fields?}}`), plus `GET /api/cluster` and
 *   `POST /api/cluster/voice-servers/:nodeId/drain` / `…/resume` (maintenance of one voice server).
 *   A key speaks for an account (runtime/api-keys.ts, checked from memory): an account sees only its
 *   own events; the operator's keys see all, and alone may use `/api/cluster` and `/api/keys`
 *   (`POST` create, `GET` list, `DELETE /api/keys/:keyId` revoke).
 * - `/e/:token…`, `/s/:streamId/:file`, `/a/:streamId/:file`: attendee access, no API key.
 * - `/vendor/hls.min.js` and `/healthz`.
 * - `/dashboard` (the event manager, web/dashboard-page.ts), `/api/openapi.json` (no API key), and the
 *   host link's own routes `GET /e/:token/info` and `POST /e/:token/end` (host-role tokens only).
 * With `tlsCert`/`tlsKey` configured the same server speaks HTTPS instead of HTTP.
 * The gateway owns its http.Server (moleculer-web's own would print on start and exit the process on
 * EADDRINUSE); a port in use fails the service start instead.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from 'moleculer';
import ApiGateway from 'moleculer-web';
import type { JitcastConfig } from '../cluster.config.ts';
import { collectClusterStatus } from '../runtime/cluster-status.ts';
import type { FieldErrors } from '../runtime/errors.ts';
import { ForbiddenError, NotFoundError, UnauthorizedError, ValidationFailedError } from '../runtime/errors.ts';
import { bodyKind, errorToXml, parseRequestBody, prefersXml, toXml } from '../runtime/http-body.ts';
import { GatewayMetrics } from '../runtime/metrics.ts';
import { ListenerWorkers, type WorkerFileAnswer, type WorkerFileQuestion, type WorkerStats } from '../runtime/listener-workers.ts';
import { pendingCount } from '../runtime/reporting.ts';
import { bearerToken } from '../codecs/api-key.ts';
import { ApiKeys, keysFileOf, requireOperator } from '../runtime/api-keys.ts';
import { EVENTS } from '../runtime/contracts.ts';
import { openPostgres } from '../runtime/db.ts';
import { createRedis } from '../runtime/redis.ts';
import { openApiDocument } from '../runtime/openapi.ts';
import { RECENT_ERRORS_EVENT, RecentErrorLog, type RecentErrorsBatch } from '../runtime/recent-errors.ts';
import { TokenError, verifyToken, type AccessClaims } from '../codecs/token.ts';
import { pinFor } from '../codecs/pin.ts';
import type { EventView } from '../runtime/contracts.ts';
import { dashboardCsp, renderDashboardPage } from '../web/dashboard-page.ts';
import { hostInfoOf } from '../web/host-page.ts';

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
  /** ID of the API key that authenticated the request (`op-…` for a key from config). */
  $apiKeyId?: string;
  /** The account that key belongs to (`operator` for keys from config). */
  $account?: string;
  originalUrl?: string;
};

type GatewayService = Service & {
  server?: http.Server | https.Server;
  /** Requests the listener workers pass on, over a Unix socket (runtime/listener-workers.ts). */
  innerServer?: http.Server;
  innerSocket?: string;
  workers?: ListenerWorkers;
  httpHandler(req: IncomingMessage, res: ServerResponse): void;
};

/** What the gateway asks of a local attendee access for its listener workers. */
interface WorkerSide {
  answerForWorker(q: WorkerFileQuestion): Promise<Omit<WorkerFileAnswer, 'type' | 'id'>>;
  meterFromWorker(segments: WorkerStats['segments'], playlists: WorkerStats['playlists']): void;
  hotCacheMs(): number;
}

/** The gateway's socket for its listener workers: in the data directory, or the temp directory when that path is too long for a socket. */
function innerSocketPath(config: JitcastConfig): string {
  const inData = resolve(config.dataDir, 'run', 'gateway.sock');
  return inData.length < 100 ? inData : join(tmpdir(), `jitcast-gateway-${process.pid}-${config.httpPort}.sock`);
}

/** Root element names of XML answers, by action. */
const XML_ROOT: Record<string, string> = {
  'reservation.list': 'events',
  'usage.report': 'report',
  'gateway.cluster': 'cluster',
  'gateway.drainVoiceServer': 'voiceServer',
  'gateway.resumeVoiceServer': 'voiceServer',
  'gateway.listKeys': 'apiKeys',
  'gateway.createKey': 'apiKey',
  'gateway.revokeKey': 'apiKey',
};

const PARAMS_OF_ATTENDEE_ACTION: Record<string, readonly string[]> = {
  'attendee-access.page': ['token'],
  'attendee-access.status': ['token'],
  'attendee-access.live': ['token', 'l'],
  'attendee-access.steering': ['token', 's', '_HLS_pathway', 'l'],
  'attendee-access.archive': ['token'],
  'attendee-access.liveFile': ['streamId', 'file', 'a', 'l'],
  'attendee-access.archiveFile': ['streamId', 'file', 'a'],
  'gateway.hostInfo': ['token'],
  'gateway.hostEnd': ['token'],
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
  /** The API key registry (runtime/api-keys.ts), made in created(); keys are checked from memory only. */
  let keys: ApiKeys | undefined;
  const hlsPath = createRequire(import.meta.url).resolve('hls.js/dist/hls.min.js');
  let hlsJs: Buffer | undefined;
  /** `/metrics` (runtime/metrics.ts), made in created(). */
  let metrics: GatewayMetrics | undefined;
  let openApiJson: string | undefined;
  /** Warn/error entries every node broadcasts, shown by the event manager. */
  const recentErrors = new RecentErrorLog(50);

  /** Claims of a host link; 403 for a link that does not verify and for an attendee link. */
  function hostClaims(token: unknown): AccessClaims {
    let claims: AccessClaims;
    try {
      claims = verifyToken(config.secret, typeof token === 'string' ? token : '', Math.floor(Date.now() / 1000));
    } catch (err) {
      if (err instanceof TokenError) throw new ForbiddenError(`this host link is not valid (${err.code})`);
      throw err;
    }
    if (claims.r !== 'host') throw new ForbiddenError(`this is an attendee link: only the host link of event ${claims.e} can do this`);
    return claims;
  }

  /** The host page's view: the event, its PIN, and listener counts from the usage report when a usage actor answers. */
  async function hostView(ctx: Context, eventId: string) {
    const [view, report] = await Promise.all([
      ctx.call('event.get', { eventId }) as Promise<EventView>,
      ctx.call('usage.report', { eventId }, { timeout: 1500 }).catch(() => undefined) as Promise<{ listeners?: unknown } | undefined>,
    ]);
    return hostInfoOf(view, pinFor(config.secret, eventId), report?.listeners);
  }

  /** `/api` middleware: API key first (nothing is read for a stranger), then the body. */
  function apiMiddleware(this: Service, req: GatewayRequest, _res: ServerResponse, next: (err?: unknown) => void): void {
    // Constant time, from memory: no DB, Redis or storage between a key and its answer.
    const who = keys?.authenticate(bearerToken(req.headers.authorization));
    if (!who) {
      // Leave the body unread; Node drains it so the 401 can still be sent on this connection.
      next(new UnauthorizedError());
      return;
    }
    req.$apiKeyId = who.keyId;
    req.$account = who.account;
    // Known before parsing, so an XML client whose body is refused (hostile, malformed) gets its error in XML.
    req.$bodyKind = bodyKind(req.headers['content-type']);
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
          'GET /events/:eventId/report': 'usage.report',
          'PATCH /events/:eventId': 'reservation.update',
          'DELETE /events/:eventId': 'reservation.cancel',
          'POST /events/:eventId/end': 'reservation.end',
          'POST /events/:eventId/archive/retry': 'reservation.retryArchive',
          'GET /cluster': 'gateway.cluster',
          'POST /cluster/voice-servers/:nodeId/drain': 'gateway.drainVoiceServer',
          'POST /cluster/voice-servers/:nodeId/resume': 'gateway.resumeVoiceServer',
          'POST /keys': 'gateway.createKey',
          'GET /keys': 'gateway.listKeys',
          'DELETE /keys/:keyId': 'gateway.revokeKey',
        },
        onBeforeCall(ctx: Context<unknown, Record<string, unknown>>, _route: unknown, req: GatewayRequest) {
          ctx.meta.apiKey = req.$apiKeyId;
          // Whose events the call sees (actors/reservation.service.ts viewerOf): never from the request itself.
          ctx.meta.account = req.$account;
          // Parameters come from the body and the path only; the query string carries none here
          // (but `GET /keys?account=…`).
          const params = req.$params ?? {};
          const fromQuery = req.$alias?.action === 'gateway.listKeys' ? ['account'] : [];
          for (const k of Object.keys(req.query ?? {})) {
            if (!(req.body && Object.hasOwn(req.body as object, k)) && k !== 'eventId' && !fromQuery.includes(k)) delete params[k];
          }
        },
        onAfterCall(ctx: Context<unknown, Record<string, unknown>>, _route: unknown, req: GatewayRequest, res: ServerResponse, data: unknown) {
          const action = req.$alias?.action ?? '';
          res.setHeader('Cache-Control', 'no-store');
          if (action === 'reservation.create') {
            ctx.meta.$statusCode = 201;
            ctx.meta.$location = `/api/events/${(data as { eventId: string }).eventId}`;
          }
          if (action === 'gateway.createKey') {
            ctx.meta.$statusCode = 201;
            ctx.meta.$location = `/api/keys/${(data as { keyId: string }).keyId}`;
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
          'GET /e/:token/steering.json': 'attendee-access.steering',
          'GET /e/:token/archive.m3u8': 'attendee-access.archive',
          'GET /s/:streamId/:file': 'attendee-access.liveFile',
          'GET /a/:streamId/:file': 'attendee-access.archiveFile',
          'GET /e/:token/info': 'gateway.hostInfo',
          'POST /e/:token/end': 'gateway.hostEnd',
          'GET /api/openapi.json'(_req: IncomingMessage, res: ServerResponse) {
            openApiJson ??= JSON.stringify(openApiDocument(config.publicUrl));
            res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-cache', 'Content-Length': Buffer.byteLength(openApiJson) });
            res.end(openApiJson);
          },
          'GET /dashboard'(_req: IncomingMessage, res: ServerResponse) {
            const nonce = randomBytes(18).toString('base64');
            const html = renderDashboardPage({ nonce });
            res.writeHead(200, {
              'Content-Type': 'text/html; charset=utf-8',
              'Content-Length': Buffer.byteLength(html),
              'Content-Security-Policy': dashboardCsp(nonce),
              'Cache-Control': 'no-store',
              'Referrer-Policy': 'no-referrer',
              'X-Content-Type-Options': 'nosniff',
            });
            res.end(html);
          },
          // Prometheus text format, no API key (like /healthz): counts and latencies, no event data.
          'GET /metrics'(this: Service, _req: IncomingMessage, res: ServerResponse) {
            const m = metrics;
            if (!m) return sendError(this, _req as GatewayRequest, res, new NotFoundError('metrics are not running'), false);
            m.render(this.broker).then(
              (body) => {
                res.writeHead(200, { 'Content-Type': m.contentType, 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(body) });
                res.end(body);
              },
              (err: unknown) => sendError(this, _req as GatewayRequest, res, err, false),
            );
          },
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

  /**
   * Listener workers (config `listenerWorkers`): the inner server takes what they pass on over a Unix
   * socket, then each worker gets the public listening socket. Needs the attendee access actor on
   * this node, whose hot path answers the workers' questions.
   */
  async function startListenerWorkers(self: GatewayService, server: http.Server | https.Server): Promise<void> {
    const aa = self.broker.getLocalService('attendee-access') as unknown as Partial<WorkerSide> | undefined;
    if (!aa?.answerForWorker || !aa.meterFromWorker || !aa.hotCacheMs) {
      self.logger.warn(`listener workers not started: this node has no attendee-access [listenerWorkers:${config.listenerWorkers}]`);
      return;
    }
    const side = aa as WorkerSide;
    const socketPath = innerSocketPath(config);
    mkdirSync(dirname(socketPath), { recursive: true });
    rmSync(socketPath, { force: true });
    await new Promise<void>((ok, fail) => {
      self.innerServer!.once('error', fail);
      self.innerServer!.listen(socketPath, () => {
        self.innerServer!.off('error', fail);
        ok();
      });
    });
    chmodSync(socketPath, 0o600);
    self.innerSocket = socketPath;
    self.workers = new ListenerWorkers({
      count: config.listenerWorkers,
      server,
      init: { secret: config.secret, hotMs: side.hotCacheMs(), socketPath, ...(config.tlsCert && config.tlsKey ? { tlsCert: config.tlsCert, tlsKey: config.tlsKey } : {}) },
      answerFile: (q) => side.answerForWorker(q),
      onStats: (st) => {
        side.meterFromWorker(st.segments, st.playlists);
        for (const seconds of st.latencies) metrics?.observe('attendee-access.liveFile', 'GET', 200, seconds);
        metrics?.workerServed(st.pid, st.selfServed);
      },
      logger: self.logger,
    });
    await self.workers.start();
    self.logger.info(`listener workers accept on the gateway's port [count:${config.listenerWorkers} pids:${self.workers.pids.join(',')} inner:${socketPath}]`);
  }

  return {
    name: 'gateway',
    mixins: [ApiGateway as unknown as ServiceSchema],
    settings: settings as ServiceSettingSchema,

    actions: {
      cluster: {
        /** The cluster at a glance: nodes, voice servers, channels, encoder ports, live streams. Operator only: it names every account's events. */
        async handler(this: any, ctx: Context<unknown, Record<string, unknown>>) {
          requireOperator(ctx.meta.account, 'the cluster status');
          return collectClusterStatus(this.broker, { recentErrors: () => recentErrors.list() });
        },
      },
      hostInfo: {
        /** The host page's view of its event (host link only). */
        async handler(this: any, ctx: Context<{ token?: unknown }, Record<string, unknown>>) {
          const { e: eventId } = hostClaims(ctx.params.token);
          ctx.meta.$responseHeaders = { 'Cache-Control': 'no-store', 'Referrer-Policy': 'no-referrer' };
          return hostView(ctx, eventId);
        },
      },
      hostEnd: {
        /** The host ends their event from the host page (host link only), as `POST /api/events/:id/end` does. */
        async handler(this: any, ctx: Context<{ token?: unknown }, Record<string, unknown>>) {
          const { e: eventId } = hostClaims(ctx.params.token);
          await ctx.call('event.end', { eventId, reason: 'host' });
          this.logger.info(`event ended from the host page [event:${eventId}]`);
          ctx.meta.$responseHeaders = { 'Cache-Control': 'no-store', 'Referrer-Policy': 'no-referrer' };
          return hostView(ctx, eventId);
        },
      },
      drainVoiceServer: {
        /** Maintenance: the voice server takes no new calls, lets busy channels finish, then reports drained. */
        async handler(this: any, ctx: Context<{ nodeId?: unknown }, Record<string, unknown>>) {
          requireOperator(ctx.meta.account, 'draining a voice server');
          return this.voiceServerCommand(ctx.params.nodeId, 'drain');
        },
      },
      resumeVoiceServer: {
        /** Back in service after a drain. */
        async handler(this: any, ctx: Context<{ nodeId?: unknown }, Record<string, unknown>>) {
          requireOperator(ctx.meta.account, 'resuming a voice server');
          return this.voiceServerCommand(ctx.params.nodeId, 'resume');
        },
      },
      createKey: {
        /** `POST /api/keys {account, label?}`: a new key for the account, shown in this answer only (operator only). */
        async handler(this: any, ctx: Context<Record<string, unknown>, Record<string, unknown>>) {
          requireOperator(ctx.meta.account, 'managing API keys');
          return keys!.create(ctx.params ?? {});
        },
      },
      listKeys: {
        /** `GET /api/keys[?account=A]`: every key's ID, account, label and times; never a key (operator only). */
        async handler(this: any, ctx: Context<{ account?: unknown }, Record<string, unknown>>) {
          requireOperator(ctx.meta.account, 'managing API keys');
          return keys!.list(ctx.params?.account);
        },
      },
      revokeKey: {
        /** `DELETE /api/keys/:keyId`: every gateway refuses the key from now on (operator only). */
        async handler(this: any, ctx: Context<{ keyId?: unknown }, Record<string, unknown>>) {
          requireOperator(ctx.meta.account, 'managing API keys');
          return keys!.revoke(ctx.params?.keyId);
        },
      },
    },

    events: {
      /** Pool evictions for /metrics. */
      [EVENTS.assetHealth](ctx: Context<unknown>) {
        metrics?.noteAssetHealth(ctx.params as never);
      },
      /** A key created or revoked on some gateway (this one too): into this gateway's registry at once. */
      [EVENTS.apiKeyChanged](ctx: Context<unknown>) {
        keys?.heard(ctx.params);
      },
      [RECENT_ERRORS_EVENT](ctx: Context<RecentErrorsBatch>) {
        const b = ctx.params;
        if (!b || !Array.isArray(b.entries)) return;
        recentErrors.add(b.entries);
        if (b.dropped > 0) {
          recentErrors.add([{ at: new Date().toISOString(), nodeId: String(b.nodeId), level: 'warn', module: 'recent-errors', message: `${b.dropped} more entries were dropped on this node`, count: 1 }]);
        }
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
      keys = new ApiKeys({
        operatorKeys: config.apiKeys,
        file: keysFileOf(config.dataDir),
        // Cluster mode: the registry lives in Redis, each gateway holds a copy (runtime/api-keys.ts).
        redis: config.redisUrl ? createRedis({ url: config.redisUrl, namespace: config.namespace, name: 'api-keys', logger: self.logger }) : undefined,
        // The reporting mirror of accounts and keys needs PostgreSQL: embedded PGlite has one writer, the event actor's.
        openDb: config.dbUrl ? () => openPostgres(config.dbUrl!, self.logger) : undefined,
        publish: (record) => self.broker.broadcast(EVENTS.apiKeyChanged, record),
        logger: self.logger,
      });
      metrics = new GatewayMetrics({ redisUrl: config.redisUrl, namespace: config.namespace, localQueueDepth: () => ({ events: pendingCount() }) });
      const handler = (req: IncomingMessage, res: ServerResponse) => {
        // Listener hot path: an attendee access on this node answers live files without routing
        // (actors/attendee-access.service.ts fastLiveFile); anything it does not take is routed as usual.
        const aa = self.broker.getLocalService('attendee-access') as unknown as { fastLiveFile?(q: IncomingMessage, r: ServerResponse, fallback: () => void): boolean } | undefined;
        if (aa?.fastLiveFile?.(req, res, () => self.httpHandler(req, res))) return;
        self.httpHandler(req, res);
      };
      // Files were checked by validate(); they are read once, at creation.
      const server = config.tlsCert && config.tlsKey
        ? https.createServer({ cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey) }, handler)
        : http.createServer(handler);
      server.requestTimeout = 60_000;
      server.headersTimeout = 20_000;
      // The per-request line is built only when it is logged: the listener path answers thousands a second.
      const debugLog = config.logLevel === 'debug' || config.logLevel === 'trace';
      if (config.listenerWorkers > 0) self.innerServer = http.createServer(handler);
      const observed = (srv: http.Server | https.Server) => srv.on('request', (req: IncomingMessage, res: ServerResponse) => {
        const t0 = performance.now();
        res.once('finish', () => {
          // By alias (bounded), never the raw URL: tokens and stream IDs would make a series each.
          const alias = (req as GatewayRequest & { $alias?: { fullPath?: string } }).$alias;
          metrics?.observe(alias?.action ?? alias?.fullPath ?? 'unmatched', req.method ?? '-', res.statusCode, (performance.now() - t0) / 1000);
          if (debugLog) self.logger.debug(`http [${req.method} ${logPath((req as GatewayRequest).originalUrl ?? req.url)} ${res.statusCode} ${(performance.now() - t0).toFixed(1)}ms]`);
        });
      });
      observed(server);
      if (self.innerServer) observed(self.innerServer);
      self.server = server;
    },

    async started() {
      const self = this as unknown as GatewayService;
      const server = self.server!;
      // Keys before the port opens: no request is judged against an empty registry.
      await keys!.start();
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error) => {
          void keys?.stop();
          reject(new Error(`gateway cannot listen [${config.httpHost}:${config.httpPort}${config.tlsCert ? ' tls' : ''}] ${err.message}`));
        };
        server.once('error', onError);
        server.listen(config.httpPort, config.httpHost, () => {
          server.off('error', onError);
          resolve();
        });
      });
      server.on('error', (err) => self.logger.error(`http server error [${config.httpHost}:${config.httpPort}] ${err.message}`));
      if (self.innerServer) await startListenerWorkers(self, server);
    },

    async stopped() {
      const self = this as unknown as GatewayService;
      await self.workers?.stop();
      if (self.innerServer?.listening) {
        await new Promise<void>((resolve) => {
          self.innerServer!.close(() => resolve());
          self.innerServer!.closeAllConnections();
        });
      }
      if (self.innerSocket) rmSync(self.innerSocket, { force: true });
      await keys?.stop();
      await metrics?.close();
      const server = self.server;
      if (!server?.listening) return;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Keep-alive connections would hold close() open for good.
        server.closeAllConnections();
      });
    },
  };
}
