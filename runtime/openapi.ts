/**
 * The OpenAPI 3.1 document of jitcast's HTTP interface (DESIGN.md "REST"), served at
 * `GET /api/openapi.json` without an API key. Every REST operation takes and answers JSON or XML
 * (`Content-Type` / `Accept: application/xml`); the XML element names are given with each schema.
 * spec/runtime/openapi.spec.ts checks that every alias of the gateway's route table is described
 * here, so the document cannot drift from the routes.
 */

type Json = Record<string, unknown>;

const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });

/** A body in both syntaxes; XML uses `root` as its root element. */
function both(schema: Json, root: string): Json {
  return {
    'application/json': { schema },
    'application/xml': { schema: { ...schema, xml: { name: root } } },
  };
}

const errorResponse = (description: string): Json => ({ description, content: both(ref('Error'), 'error') });

/** The error answers every API operation may give. */
const STD_ERRORS: Json = {
  '400': errorResponse('Validation failed (`fields` names each bad field) or malformed body'),
  '401': errorResponse('Missing or wrong API key'),
  '413': errorResponse('Body larger than the configured limit'),
  '415': errorResponse('Content-Type other than JSON or XML'),
  '429': errorResponse('Too many requests'),
  '500': errorResponse('Internal error (details only in the node log)'),
  '503': errorResponse('No capacity or storage unavailable right now; retry'),
};

function op(o: {
  id: string;
  summary: string;
  tag: string;
  ok: [status: string, description: string, schema?: Json, root?: string];
  body?: [schema: Json, root: string];
  extra?: Record<string, string>;
  params?: string[];
  description?: string;
}): Json {
  const [status, description, schema, root] = o.ok;
  const responses: Json = {
    [status]: schema ? { description, content: both(schema, root ?? 'result') } : { description },
    ...STD_ERRORS,
  };
  for (const [code, text] of Object.entries(o.extra ?? {})) responses[code] = errorResponse(text);
  return {
    operationId: o.id,
    summary: o.summary,
    ...(o.description ? { description: o.description } : {}),
    tags: [o.tag],
    ...(o.params ? { parameters: o.params.map((p) => ({ $ref: `#/components/parameters/${p}` })) } : {}),
    ...(o.body ? { requestBody: { required: true, content: both(o.body[0], o.body[1]) } } : {}),
    responses,
  };
}

/** An operation outside `/api`: no API key, answers as described. */
function open(o: { id: string; summary: string; tag: string; params?: string[]; responses: Json; description?: string }): Json {
  return {
    operationId: o.id,
    summary: o.summary,
    ...(o.description ? { description: o.description } : {}),
    tags: [o.tag],
    security: [],
    ...(o.params ? { parameters: o.params.map((p) => ({ $ref: `#/components/parameters/${p}` })) } : {}),
    responses: o.responses,
  };
}

const text = (type: string, description: string): Json => ({ description, content: { [type]: { schema: { type: 'string' } } } });
const forbidden = { '403': { description: 'Token or auth code does not verify, has expired, or has the wrong role', content: { 'application/json': { schema: ref('Error') } } } };
const notFound = { '404': { description: 'No such event, stream or file (or not live)', content: { 'application/json': { schema: ref('Error') } } } };

const SCHEMAS: Json = {
  Error: {
    type: 'object',
    required: ['error'],
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message'],
        properties: {
          code: { type: 'string', description: 'SCREAMING_SNAKE error type, e.g. VALIDATION_FAILED, NOT_FOUND, STATE_CONFLICT' },
          message: { type: 'string' },
          fields: { type: 'object', additionalProperties: { type: 'string' }, description: 'Per-field messages (400 only); XML: `<field name="…">`' },
        },
      },
    },
  },
  ReservationRequest: {
    type: 'object',
    required: ['title'],
    additionalProperties: false,
    properties: {
      title: { type: 'string', minLength: 1, maxLength: 200 },
      startsAt: { type: 'string', format: 'date-time', description: 'A guideline, never enforced; may not lie in the past' },
      format: { type: 'string', enum: ['hls'], default: 'hls' },
      archiveDays: { type: 'integer', minimum: 1, maximum: 3650, default: 30 },
      password: { type: 'string', minLength: 4, maxLength: 128, description: 'Attendees must also give this password' },
    },
  },
  ReservationPatch: {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    properties: {
      title: { type: 'string', minLength: 1, maxLength: 200 },
      startsAt: { type: 'string', format: 'date-time' },
      archiveDays: { type: 'integer', minimum: 1, maximum: 3650 },
    },
  },
  EventStatus: { type: 'string', enum: ['reserved', 'live', 'ended', 'archiving', 'archived', 'archive-error', 'cancelled'] },
  Stream: {
    type: 'object',
    properties: {
      streamId: { type: 'string' },
      nodeId: { type: 'string' },
      dataCenter: { type: 'string' },
      port: { type: 'integer' },
      format: { type: 'string', enum: ['hls'] },
      url: { type: 'string' },
      startedAt: { type: 'string', format: 'date-time' },
    },
    xml: { name: 'stream' },
  },
  ArchiveFragment: {
    type: 'object',
    properties: { streamId: { type: 'string' }, start: { type: 'number' }, end: { type: 'number' } },
    xml: { name: 'fragment' },
  },
  Event: {
    type: 'object',
    required: ['eventId', 'title', 'status'],
    properties: {
      eventId: { type: 'string', pattern: '^\\d{8}$', description: '8 digits, the last a Luhn check digit' },
      pin: { type: 'string', pattern: '^\\d{6}$' },
      title: { type: 'string' },
      format: { type: 'string', enum: ['hls'] },
      startsAt: { type: 'string', format: 'date-time' },
      createdAt: { type: 'string', format: 'date-time' },
      updatedAt: { type: 'string', format: 'date-time' },
      liveAt: { type: 'string', format: 'date-time' },
      endedAt: { type: 'string', format: 'date-time' },
      archiveDays: { type: 'integer' },
      hasPassword: { type: 'boolean' },
      attendeeUrl: { type: 'string', format: 'uri' },
      hostUrl: { type: 'string', format: 'uri' },
      status: ref('EventStatus'),
      callers: { type: 'integer', description: 'Callers in the conference now' },
      streams: { type: 'array', items: ref('Stream'), xml: { wrapped: true } },
      archive: { type: 'array', items: ref('ArchiveFragment'), xml: { wrapped: true } },
      archiveError: { type: 'string' },
    },
    xml: { name: 'event' },
  },
  EventReport: {
    type: 'object',
    description: 'Usage of one event: listeners (peak and total), listening minutes, call minutes, streams and fragments',
    properties: {
      eventId: { type: 'string' },
      status: { type: 'string' },
      title: { type: 'string' },
      listeners: { type: 'object', properties: { peak: { type: 'integer' }, peakAt: { type: 'string', format: 'date-time' }, total: { type: 'integer' }, current: { type: 'integer' } } },
      listeningMinutes: { type: 'number' },
      callMinutes: { type: 'number' },
      calls: { type: 'object', properties: { total: { type: 'integer' }, active: { type: 'integer' } } },
      streams: { type: 'object', properties: { total: { type: 'integer' }, live: { type: 'integer' }, minutes: { type: 'number' } } },
      fragments: { type: 'integer' },
      requests: { type: 'object', properties: { segments: { type: 'integer' }, playlists: { type: 'integer' } } },
      final: { type: 'boolean', description: 'Nothing will change any more (archived, archive error or cancelled)' },
      sources: { type: 'array', items: { type: 'string', enum: ['live', 'db'] } },
      dbError: { type: 'string' },
      generatedAt: { type: 'string', format: 'date-time' },
    },
    xml: { name: 'report' },
  },
  ApiKeyRequest: {
    type: 'object',
    required: ['account'],
    properties: { account: { type: 'string', description: 'The customer account the key speaks for' }, label: { type: 'string' } },
  },
  ApiKey: {
    type: 'object',
    description: 'An API key of a customer account (operator keys only may manage keys); `key` itself is in the create answer only',
    properties: {
      keyId: { type: 'string' },
      account: { type: 'string' },
      label: { type: 'string' },
      createdAt: { type: 'string', format: 'date-time' },
      revokedAt: { type: 'string', format: 'date-time' },
      revoked: { type: 'boolean' },
      source: { type: 'string', enum: ['api', 'config'] },
      key: { type: 'string', description: 'The key, shown once' },
    },
    xml: { name: 'key' },
  },
  VoiceServer: {
    type: 'object',
    description: "A voice server's status: state (in-service, suspended, maintenance, out-of-service), drained, ports, channels",
    properties: {
      nodeId: { type: 'string' },
      state: { type: 'string' },
      drained: { type: 'boolean' },
    },
    additionalProperties: true,
    xml: { name: 'voiceServer' },
  },
  ClusterStatus: {
    type: 'object',
    description: 'The cluster at a glance (what the event manager shows)',
    properties: {
      generatedAt: { type: 'string', format: 'date-time' },
      nodes: { type: 'array', items: { type: 'object', additionalProperties: true } },
      voiceServers: { type: 'array', items: ref('VoiceServer') },
      sipRouters: { type: 'array', items: { type: 'object', additionalProperties: true } },
      encoderPorts: { type: 'array', items: { type: 'object', additionalProperties: true } },
      streams: { type: 'array', items: { type: 'object', additionalProperties: true } },
      pools: { type: 'object', additionalProperties: true, description: 'Health-tested pools: every voice server and encoder, healthy or evicted' },
      archiveLeader: { type: 'string' },
      archiveCoordinators: { type: 'array', items: { type: 'object', additionalProperties: true } },
      errors: { type: 'array', items: { type: 'object', additionalProperties: true }, description: 'Nodes that did not answer this status request' },
      recentErrors: {
        type: 'array',
        description: 'Warn/error log entries the nodes broadcast, newest first',
        items: {
          type: 'object',
          properties: {
            at: { type: 'string', format: 'date-time' },
            nodeId: { type: 'string' },
            level: { type: 'string', enum: ['warn', 'error', 'fatal'] },
            module: { type: 'string' },
            message: { type: 'string' },
            count: { type: 'integer' },
          },
        },
      },
    },
    xml: { name: 'cluster' },
  },
  HostInfo: {
    type: 'object',
    description: 'What the host page shows',
    properties: {
      eventId: { type: 'string' },
      pin: { type: 'string' },
      title: { type: 'string' },
      status: ref('EventStatus'),
      live: { type: 'boolean' },
      callers: { type: 'integer' },
      streams: { type: 'integer' },
      listeners: { description: 'Listener counts from the usage report (`{current, peak, total}`), null when no usage actor answers' },
      attendeeUrl: { type: 'string' },
      archiveReady: { type: 'boolean' },
      archiveUrl: { type: 'string', description: 'Once archived: the attendee link, which then plays the archive' },
      archivePlaylistUrl: { type: 'string' },
    },
  },
};

const PARAMETERS: Json = {
  eventId: { name: 'eventId', in: 'path', required: true, schema: { type: 'string', pattern: '^\\d{8}$' } },
  nodeId: { name: 'nodeId', in: 'path', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' } },
  account: { name: 'account', in: 'query', required: false, description: 'Only the keys of this account', schema: { type: 'string' } },
  keyId: { name: 'keyId', in: 'path', required: true, schema: { type: 'string' } },
  token: { name: 'token', in: 'path', required: true, description: 'Signed attendee or host token (the last part of the link)', schema: { type: 'string' } },
  streamId: { name: 'streamId', in: 'path', required: true, schema: { type: 'string' } },
  file: { name: 'file', in: 'path', required: true, schema: { type: 'string' } },
  listedStreams: { name: 's', in: 'query', required: false, description: 'Comma-separated stream IDs the master playlist listed', schema: { type: 'string' } },
  pathway: { name: '_HLS_pathway', in: 'query', required: false, description: 'The pathway (stream) the player is on', schema: { type: 'string' } },
  authCode: { name: 'a', in: 'query', required: true, description: 'Auth code from the playlist', schema: { type: 'string' } },
};

const STATE = { '404': 'No such event', '409': 'Not possible in the event\'s state' };

/** The OpenAPI 3.1 document; `serverUrl` is the node's public URL. */
export function openApiDocument(serverUrl: string, version = '0.1.0'): Json {
  return {
    openapi: '3.1.0',
    info: {
      title: 'jitcast',
      version,
      summary: 'Phone-to-web conference casting: reserve events, dial in, listen live over HLS, archives.',
      description:
        'Every `/api` operation needs `Authorization: Bearer <api key>` and takes and answers JSON or XML: send `Content-Type: application/xml` and/or `Accept: application/xml` for XML. ' +
        'XML bodies with a DOCTYPE or entity declaration, nesting deeper than 32 or more than 1000 elements are refused (400); bodies over the size limit answer 413. ' +
        'Errors are `{error: {code, message, fields?}}` (XML: `<error><code/><message/><field name=…/></error>`).',
    },
    servers: [{ url: serverUrl }],
    security: [{ apiKey: [] }],
    tags: [
      { name: 'events', description: 'Reservations and their lifecycle' },
      { name: 'cluster', description: 'Event manager: the cluster at a glance and voice server maintenance' },
      { name: 'keys', description: 'API keys of customer accounts' },
      { name: 'attendee', description: 'Attendee and host links (no API key: the signed token is the credential)' },
      { name: 'web', description: 'Pages, static files, health and metrics' },
    ],
    paths: {
      '/api/events': {
        get: op({ id: 'listEvents', summary: 'List events', tag: 'events', ok: ['200', 'Every event of the account', { type: 'array', items: ref('Event'), xml: { wrapped: true } }, 'events'] }),
        post: op({
          id: 'reserveEvent', summary: 'Reserve an event', tag: 'events',
          description: 'Complete once event-info.xml is durably in content storage. Answers the event ID, PIN, attendee and host links.',
          body: [ref('ReservationRequest'), 'event'],
          ok: ['201', 'Reserved (Location: /api/events/{eventId})', ref('Event'), 'event'],
        }),
      },
      '/api/events/{eventId}': {
        get: op({ id: 'getEvent', summary: 'Get event information (status, live streams, archive)', tag: 'events', params: ['eventId'], ok: ['200', 'The event', ref('Event'), 'event'], extra: { '404': 'No such event' } }),
        patch: op({ id: 'modifyEvent', summary: 'Modify a reservation', tag: 'events', params: ['eventId'], body: [ref('ReservationPatch'), 'event'], ok: ['200', 'The modified event', ref('Event'), 'event'], extra: STATE }),
        delete: op({ id: 'cancelEvent', summary: 'Cancel a reservation', tag: 'events', params: ['eventId'], ok: ['200', 'The cancelled event', ref('Event'), 'event'], extra: STATE }),
      },
      '/api/events/{eventId}/end': {
        post: op({ id: 'endEvent', summary: 'End a live event now (same as the end code)', tag: 'events', params: ['eventId'], ok: ['200', 'The ended event', ref('Event'), 'event'], extra: STATE }),
      },
      '/api/events/{eventId}/archive/retry': {
        post: op({ id: 'retryArchive', summary: "Clear the event's archive error flag so the archive is built again", tag: 'events', params: ['eventId'], ok: ['200', 'The event, archiving again', ref('Event'), 'event'], extra: STATE }),
      },
      '/api/events/{eventId}/report': {
        get: op({ id: 'eventReport', summary: 'Usage report of one event', tag: 'events', params: ['eventId'], ok: ['200', 'The report', ref('EventReport'), 'report'], extra: { '404': 'No such event' } }),
      },
      '/api/cluster': {
        get: op({ id: 'clusterStatus', summary: 'The cluster at a glance', tag: 'cluster', extra: { '403': 'Needs an operator key' }, ok: ['200', 'Nodes, voice servers, channels, encoder ports, streams, pools, archive leader, recent errors', ref('ClusterStatus'), 'cluster'] }),
      },
      '/api/cluster/voice-servers/{nodeId}/drain': {
        post: op({ id: 'drainVoiceServer', summary: 'Voice server into maintenance: no new calls, busy channels finish', tag: 'cluster', params: ['nodeId'], ok: ['200', 'The voice server', ref('VoiceServer'), 'voiceServer'], extra: { '404': 'No voice server on that node' } }),
      },
      '/api/cluster/voice-servers/{nodeId}/resume': {
        post: op({ id: 'resumeVoiceServer', summary: 'Voice server back into service', tag: 'cluster', params: ['nodeId'], ok: ['200', 'The voice server', ref('VoiceServer'), 'voiceServer'], extra: { '404': 'No voice server on that node' } }),
      },
      '/api/keys': {
        get: op({ id: 'listKeys', summary: 'List API keys (never their secrets)', tag: 'keys', params: ['account'], extra: { '403': 'Needs an operator key' }, ok: ['200', 'The keys', { type: 'array', items: ref('ApiKey'), xml: { wrapped: true } }, 'keys'] }),
        post: op({ id: 'createKey', summary: 'Create an API key for an account', tag: 'keys', extra: { '403': 'Needs an operator key' }, body: [ref('ApiKeyRequest'), 'key'], ok: ['201', 'The new key, with its secret shown this once', ref('ApiKey'), 'key'] }),
      },
      '/api/keys/{keyId}': {
        delete: op({ id: 'revokeKey', summary: 'Revoke an API key', tag: 'keys', params: ['keyId'], ok: ['200', 'The revoked key', ref('ApiKey'), 'key'], extra: { '403': 'Needs an operator key', '404': 'No such key' } }),
      },
      '/api/openapi.json': {
        get: open({ id: 'openapi', summary: 'This document', tag: 'web', responses: { '200': { description: 'OpenAPI 3.1', content: { 'application/json': { schema: { type: 'object' } } } } } }),
      },
      '/e/{token}': {
        get: open({ id: 'eventPage', summary: 'Player page (attendee link) or host page (host link)', tag: 'attendee', params: ['token'], responses: { '200': text('text/html', 'The page'), '403': text('text/html', 'A link that does not verify'), '404': text('text/html', 'Unknown event') } }),
      },
      '/e/{token}/status.json': {
        get: open({ id: 'attendeeStatus', summary: 'What the player page polls', tag: 'attendee', params: ['token'], responses: { '200': { description: 'Status', content: { 'application/json': { schema: { type: 'object', additionalProperties: true } } } }, ...forbidden } }),
      },
      '/e/{token}/live.m3u8': {
        get: open({ id: 'livePlaylist', summary: 'HLS master playlist: one identical variant per live stream', tag: 'attendee', params: ['token'], responses: { '200': text('application/vnd.apple.mpegurl', 'Master playlist'), ...forbidden, ...notFound } }),
      },
      '/e/{token}/archive.m3u8': {
        get: open({ id: 'archivePlaylist', summary: 'The archive as an HLS VOD playlist', tag: 'attendee', params: ['token'], responses: { '200': text('application/vnd.apple.mpegurl', 'VOD playlist'), ...forbidden, ...notFound } }),
      },
      '/e/{token}/steering.json': {
        get: open({
          id: 'contentSteering', summary: 'HLS content steering for live.m3u8: streams started since, live ones first', tag: 'attendee', params: ['token', 'listedStreams', 'pathway'],
          responses: { '200': { description: 'Steering manifest (HLS content steering)', content: { 'application/json': { schema: { type: 'object', additionalProperties: true } } } }, ...forbidden, '400': { description: '`s` names streams of another event', content: { 'application/json': { schema: ref('Error') } } } },
        }),
      },
      '/e/{token}/info': {
        get: open({ id: 'hostInfo', summary: 'Host link only: the event as the host page shows it', tag: 'attendee', params: ['token'], responses: { '200': { description: 'The event', content: { 'application/json': { schema: ref('HostInfo') } } }, ...forbidden, ...notFound } }),
      },
      '/e/{token}/end': {
        post: open({ id: 'hostEnd', summary: 'Host link only: end the event now', tag: 'attendee', params: ['token'], responses: { '200': { description: 'The event, ended', content: { 'application/json': { schema: ref('HostInfo') } } }, ...forbidden, ...notFound, '409': { description: 'Not live', content: { 'application/json': { schema: ref('Error') } } } } }),
      },
      '/s/{streamId}/{file}': {
        get: open({ id: 'liveFile', summary: 'A live stream playlist or segment (behind its auth code)', tag: 'attendee', params: ['streamId', 'file', 'authCode'], responses: { '200': text('application/octet-stream', 'Playlist or MPEG-TS segment'), ...forbidden, ...notFound } }),
      },
      '/a/{streamId}/{file}': {
        get: open({ id: 'archiveFile', summary: 'An archived segment (behind its auth code)', tag: 'attendee', params: ['streamId', 'file', 'authCode'], responses: { '200': text('video/mp2t', 'MPEG-TS segment'), ...forbidden, ...notFound } }),
      },
      '/dashboard': {
        get: open({ id: 'dashboard', summary: 'The event manager (asks for an API key in the page)', tag: 'web', responses: { '200': text('text/html', 'The page') } }),
      },
      '/healthz': {
        get: open({ id: 'health', summary: 'Liveness of this node', tag: 'web', responses: { '200': { description: '`{ok: true, nodeId}`', content: { 'application/json': { schema: { type: 'object' } } } } } }),
      },
      '/metrics': {
        get: open({ id: 'metrics', summary: 'Prometheus metrics', tag: 'web', responses: { '200': text('text/plain', 'Prometheus text format') } }),
      },
      '/vendor/hls.min.js': {
        get: open({ id: 'hlsJs', summary: 'hls.js for the player page', tag: 'web', responses: { '200': text('text/javascript', 'hls.js') } }),
      },
    },
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'An API key (JITCAST_API_KEYS or one created with `jitcast keys create`)' } },
      parameters: PARAMETERS,
      schemas: SCHEMAS,
    },
  };
}
