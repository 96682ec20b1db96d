/**
 * The jitcast command line.
 *   jitcast start                  one node, every role, embedded defaults (what `npm start` runs)
 *   jitcast node --roles a,b …     one cluster node
 *   jitcast status [--json]        the cluster at a glance
 *   jitcast reserve --title T …    reserve an event
 *   jitcast events [--json]        list events
 *   jitcast event ID [--json]      one event
 *   jitcast report ID [--json]     one event's usage report
 *   jitcast end ID                 end a live event
 *   jitcast drain NODE             put a voice server into maintenance (busy calls finish)
 *   jitcast resume NODE            bring a drained voice server back into service
 *   jitcast keys create|list|revoke  API keys of customer accounts (operator key needed)
 * Every config flag also reads from the environment as JITCAST_<FLAG> (see cluster.config.ts).
 */
import { parseArgs } from 'node:util';
import { ALL_ROLES, keyOfFlag, loadConfig, type ConfigOverrides, type JitcastConfig } from '../cluster.config.ts';
import { ConfigError, JitcastError } from '../runtime/errors.ts';
import { EX_CONFIG, EX_USAGE, tellSupervisor, underSupervisor } from '../runtime/node-supervisor.ts';

const CONFIG_FLAGS = [
  'node-id', 'data-center', 'roles', 'namespace', 'nats-url', 'redis-url', 'db-url', 'db-retry-max-s', 'http-host', 'http-port', 'tls-cert', 'tls-key', 'public-url',
  'sip-host', 'sip-port', 'rtp-ports', 'encoder-ports', 'data-dir', 'storage-centers', 'api-keys', 'secret', 'archive-timeout-s',
  'archive-silence-limit-s', 'auth-code-timeout-s', 'port-reuse-timeout-s', 'port-suspend-below', 'port-resume-at', 'health-test-interval-s', 'retention-sweep-s', 'rtp-silence-timeout-s', 'digit-timeout-s', 'segment-s', 'ffmpeg-path', 'end-code',
  'listener-workers', 'log-level',
];

const HELP = `jitcast — phone-to-web conference casting

Usage:
  jitcast start [flags]                 run one node with every role (embedded mode)
  jitcast node --roles R1,R2 [flags]    run one cluster node (roles: ${ALL_ROLES.join(', ')}, all)
  jitcast status [--json]               nodes, voice servers, channels, encoder ports, live streams
  jitcast reserve --title T [--starts-at ISO] [--archive-days N] [--password P] [--json]
  jitcast events [--json]               list events
  jitcast event EVENT_ID [--json]       show one event
  jitcast report EVENT_ID [--json]      usage: listeners (peak, total), listening and call minutes, streams, fragments
  jitcast end EVENT_ID                  end a live event now
  jitcast drain NODE                    voice server of NODE into maintenance: no new calls, busy ones finish
  jitcast resume NODE                   voice server of NODE back into service
  jitcast keys create --account A [--label L] [--json]
                                        a new API key for account A, printed this once
  jitcast keys list [--account A] [--json]
                                        key IDs, accounts, labels, created, revoked (never a key)
  jitcast keys revoke KEY_ID            every gateway refuses the key from now on

Flags (each also read from JITCAST_<FLAG>, e.g. JITCAST_HTTP_PORT):
  ${CONFIG_FLAGS.map((f) => `--${f}`).join(' ')}

Supervision: start and node run the node as a child of a small supervisor that restarts it when
it dies (back-off 1 s, 2 s, 4 s … 30 s, reset after 60 s up); a configuration error (exit 78) is
not retried. --supervise false (JITCAST_SUPERVISE=0) runs the node in this process instead, for
an init system (systemd) that restarts it itself.

Client commands talk to the node's HTTP API at --url (default: the configured public URL)
with the API key from JITCAST_API_KEYS or <data-dir>/api-key.`;

function parse(argv: string[]) {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    url: { type: 'string' },
    title: { type: 'string' },
    'starts-at': { type: 'string' },
    'archive-days': { type: 'string' },
    password: { type: 'string' },
    account: { type: 'string' },
    label: { type: 'string' },
    // Read by runtime/node-supervisor.ts before this file loads; accepted here so the worker parses its argv.
    // (That reader takes every flag but json/help to carry a value: a new boolean flag goes into its VALUELESS too.)
    supervise: { type: 'string' },
  };
  for (const f of CONFIG_FLAGS) options[f] = { type: 'string' };
  return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
}

function configFrom(values: Record<string, unknown>): JitcastConfig {
  const overrides: ConfigOverrides = {};
  for (const [flag, v] of Object.entries(values)) {
    const key = keyOfFlag(flag);
    if (key && typeof v === 'string') overrides[key] = v;
  }
  return loadConfig(overrides);
}

/** The banner's SIP line: the dial-in address, or a voice server's own port behind the front door. */
function sipLine(config: JitcastConfig): string {
  const addr = `sip:jitcast@${config.sipHost}:${config.sipPort} (UDP)`;
  const voice = config.roles.includes('voice-server');
  if (config.natsUrl && voice && !config.roles.includes('sip-router')) return `  SIP (voice server)            ${addr}, reached through the cluster's sip-router`;
  if (!voice && config.roles.includes('sip-router')) return `  SIP dial-in (front door)      ${addr}`;
  if (!voice) return `  SIP                           none (no voice-server or sip-router role)`;
  return `  SIP dial-in                   ${addr}`;
}

async function runNode(config: JitcastConfig, banner: boolean): Promise<void> {
  const { startNode } = await import('../runtime/node.ts');
  const supervised = underSupervisor();
  const starting = startNode(config);
  let stopping = false;
  // One stop, however often asked: a terminal's Ctrl-C reaches the whole process group, so a
  // supervised worker hears SIGINT from the terminal and again from its supervisor.
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    if (supervised) tellSupervisor({ type: 'stopping', reason: why });
    process.stdout.write(`\n  ${why}: stopping node ${config.nodeId}…\n`);
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    // A stop during start-up lets the start finish, then stops what it started.
    await starting.then((node) => node.stop(), () => undefined);
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  // A worker whose supervisor is gone (SIGKILLed) must not run on unsupervised.
  if (supervised) process.once('disconnect', () => void stop('supervisor gone'));
  await starting;
  if (stopping) return;
  if (banner) {
    const roles = config.roles.length === ALL_ROLES.length ? 'all roles' : config.roles.join(', ');
    const lines = [
      '',
      `  jitcast node ${config.nodeId} is up (${roles}; ${config.natsUrl ? `cluster via ${config.natsUrl}` : 'embedded mode'})`,
      `  HTTP API and attendee pages   ${config.publicUrl}`,
      sipLine(config),
      `  API key                       ${config.apiKeys[0]}`,
      `  data directory                ${config.dataDir}`,
      '',
      `  Reserve:  curl -s -X POST ${config.publicUrl}/api/events -H 'Authorization: Bearer ${config.apiKeys[0]}' \\`,
      `              -H 'Content-Type: application/json' -d '{"title":"My first cast"}'`,
      '',
    ];
    process.stdout.write(lines.join('\n') + '\n');
  }
  if (supervised) tellSupervisor({ type: 'ready', nodeId: config.nodeId, pid: process.pid });
}

async function api(config: JitcastConfig, url: string | undefined, method: string, path: string, body?: unknown): Promise<any> {
  const base = url ?? config.publicUrl;
  let res: Response;
  try {
    res = await fetch(base + path, {
      method,
      headers: { Authorization: `Bearer ${config.apiKeys[0]}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (err) {
    throw new Error(`cannot reach jitcast at ${base} (${(err as Error).message}); is a node running? (npm start)`);
  }
  const text = await res.text();
  const data = text ? JSON.parse(text) : undefined;
  if (!res.ok) throw new Error(`${res.status} ${data?.error?.code ?? ''}: ${data?.error?.message ?? text}`);
  return data;
}

function table(rows: Record<string, unknown>[], cols: string[]): string {
  if (rows.length === 0) return '  (none)\n';
  const cells = rows.map((r) => cols.map((c) => String(r[c] ?? '')));
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)));
  const line = (vals: string[]) => '  ' + vals.map((v, i) => v.padEnd(widths[i])).join('  ') + '\n';
  return line(cols) + line(widths.map((w) => '-'.repeat(w))) + cells.map(line).join('');
}

/** Renders `GET /api/cluster` for people. */
export function renderStatus(s: any): string {
  let out = `jitcast cluster — ${s.nodes?.length ?? 0} node(s), archive leader: ${s.archiveLeader ?? 'n/a'}\n\nNodes\n`;
  out += table((s.nodes ?? []).map((n: any) => ({ ...n, roles: n.roles?.length === ALL_ROLES.length ? 'all' : n.roles?.join(',') }) ), ['id', 'dataCenter', 'roles', 'address', 'available']);
  out += '\nVoice servers\n';
  out += table(
    (s.voiceServers ?? []).map((v: any) => ({
      node: v.nodeId,
      dc: v.dataCenter,
      sip: `${v.sip.host}:${v.sip.port}`,
      state: v.state === 'maintenance' ? (v.drained ? 'maintenance (drained)' : 'maintenance (draining)') : (v.state ?? ''),
      ports: `${v.portRange.min}-${v.portRange.max}`,
      busy: v.ports.busy,
      free: v.ports.available,
      resting: v.ports.resting,
      channels: v.channelStates
        ? `in service ${v.channelStates.inService} (busy ${v.channelStates.busy}), maintenance ${v.channelStates.maintenance}, out of service ${v.channelStates.outOfService}`
        : v.channels.length,
    })),
    ['node', 'dc', 'sip', 'state', 'ports', 'busy', 'free', 'resting', 'channels'],
  );
  if ((s.sipRouters ?? []).length > 0) {
    out += '\nFront doors (sip-router)\n';
    out += table(
      (s.sipRouters ?? []).flatMap((r: any) =>
        (r.voiceServers.length ? r.voiceServers : [{}]).map((v: any) => ({
          router: r.nodeId,
          sip: `${r.sip.host}:${r.sip.port}`,
          dc: r.dataCenter,
          'voice server': v.nodeId ?? '(none known)',
          'its dc': v.dataCenter ?? '',
          routable: v.nodeId ? (v.routable ? 'yes' : `no: ${v.because}`) : '',
          free: v.freePorts ?? '',
        })),
      ),
      ['router', 'sip', 'dc', 'voice server', 'its dc', 'routable', 'free'],
    );
  }
  out += '\nChannels\n';
  out += table(
    (s.voiceServers ?? []).flatMap((v: any) => v.channels.map((c: any) => ({ node: v.nodeId, port: c.port, state: c.phase, event: c.eventId ?? '', caller: c.caller, codec: c.codec, since: c.since }))),
    ['node', 'port', 'state', 'event', 'caller', 'codec', 'since'],
  );
  out += '\nEncoder ports\n';
  out += table(
    (s.encoderPorts ?? []).map((e: any) => ({ node: e.nodeId, port: e.rtpPort, event: e.eventId, stream: e.streamId, state: e.state })),
    ['node', 'port', 'event', 'stream', 'state'],
  );
  out += '\nLive streams\n';
  out += table(s.streams ?? [], ['eventId', 'streamId', 'nodeId', 'dataCenter', 'port', 'startedAt', 'lastSeenAt']);
  const h = s.pools;
  if (h) {
    out += `\nPools (health tests every ${h.intervalS} s${h.tester ? ` by ${h.tester}` : ''}${h.intervalS === 0 ? ': off' : ''})\n`;
    out += table(
      (h.assets ?? []).map((a: any) => ({
        pool: a.asset,
        node: a.nodeId,
        member: a.healthy ? 'yes' : 'EVICTED',
        since: a.since,
        'last test': `${a.lastOutcome} ${a.lastMs} ms at ${a.lastTestAt}`,
        'pass/fail': `${a.passes}/${a.failures}`,
        reason: a.reason ?? '',
      })),
      ['pool', 'node', 'member', 'since', 'last test', 'pass/fail', 'reason'],
    );
  }
  if (Array.isArray(s.recentErrors)) {
    out += '\nRecent errors (newest first)\n';
    out += table(
      s.recentErrors.slice(0, 10).map((e: any) => ({ at: e.at, node: e.nodeId, level: e.level, module: e.module, message: e.count > 1 ? `${e.message} (×${e.count})` : e.message })),
      ['at', 'node', 'level', 'module', 'message'],
    );
  }
  return out;
}

/** Renders `GET /api/events/:eventId/report` for people. */
export function renderReport(r: any): string {
  const l = r.listeners ?? {};
  const lines = [
    `Usage of event ${r.eventId}${r.title ? ` "${r.title}"` : ''} — ${r.status ?? 'unknown'}${r.final ? ' (final)' : ''}`,
    `  listeners          peak ${l.peak ?? 0}${l.peakAt ? ` at ${l.peakAt}` : ''}, total ${l.total ?? 0}, now ${l.current ?? 0}`,
    `  listening minutes  ${r.listeningMinutes ?? 0}`,
    `  call minutes       ${r.callMinutes ?? 0} (${r.calls?.total ?? 0} call(s), ${r.calls?.active ?? 0} connected now)`,
    `  streams            ${r.streams?.total ?? 0} (${r.streams?.live ?? 0} live, ${r.streams?.minutes ?? 0} stream minutes)`,
    `  archive fragments  ${r.fragments ?? 0}`,
    `  requests           ${r.requests?.segments ?? 0} segments, ${r.requests?.playlists ?? 0} playlists`,
    `  from               ${(r.sources ?? []).join(' + ') || 'nothing recorded yet'}${r.dbError ? ` (reporting DB unreadable: ${r.dbError})` : ''}`,
  ];
  return lines.join('\n') + '\n';
}

/** `jitcast keys create|list|revoke`: API keys of customer accounts, through `/api/keys` (operator key). */
async function keysCommand(config: JitcastConfig, url: string | undefined, sub: string | undefined, arg: string | undefined, values: Record<string, unknown>, json: boolean): Promise<void> {
  const when = (iso: unknown) => (typeof iso === 'string' ? iso.replace(/\.\d+Z$/, 'Z') : '');
  switch (sub) {
    case 'create': {
      if (typeof values.account !== 'string') throw new Error('keys create needs --account NAME');
      const body: Record<string, unknown> = { account: values.account };
      if (typeof values.label === 'string') body.label = values.label;
      const k = await api(config, url, 'POST', '/api/keys', body);
      process.stdout.write(
        json
          ? JSON.stringify(k, null, 2) + '\n'
          : `API key for account ${k.account}${k.label ? ` (${k.label})` : ''}\n  key ID  ${k.keyId}\n  key     ${k.key}\nKeep the key now: it is shown only this once (revoke with: jitcast keys revoke ${k.keyId}).\n`,
      );
      return;
    }
    case 'list': {
      const q = typeof values.account === 'string' ? `?account=${encodeURIComponent(values.account)}` : '';
      const list = (await api(config, url, 'GET', `/api/keys${q}`)) as Array<Record<string, unknown>>;
      process.stdout.write(
        json
          ? JSON.stringify(list, null, 2) + '\n'
          : table(
              list.map((k) => ({ ...k, created: k.source === 'config' ? '(config)' : when(k.createdAt), revoked: k.revoked ? when(k.revokedAt) : 'no', label: k.label ?? '' })),
              ['keyId', 'account', 'label', 'created', 'revoked'],
            ),
      );
      return;
    }
    case 'revoke': {
      if (!arg) throw new Error('keys revoke needs a key ID (see jitcast keys list)');
      const k = await api(config, url, 'DELETE', `/api/keys/${encodeURIComponent(arg)}`);
      process.stdout.write(json ? JSON.stringify(k, null, 2) + '\n' : `API key ${k.keyId} of account ${k.account} is revoked (since ${when(k.revokedAt)})\n`);
      return;
    }
    default:
      throw new Error(`keys needs create, list or revoke (got ${sub === undefined ? 'nothing' : `'${sub}'`})`);
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const { values, positionals } = parse(argv);
  const cmd = positionals[0] ?? 'help';
  if (values.help || cmd === 'help') {
    process.stdout.write(HELP + '\n');
    return;
  }
  const config = configFrom(values);
  const url = values.url as string | undefined;
  const json = values.json === true;
  switch (cmd) {
    case 'start':
      return runNode(config, true);
    case 'node':
      return runNode(config, true);
    case 'status': {
      const s = await api(config, url, 'GET', '/api/cluster');
      process.stdout.write(json ? JSON.stringify(s, null, 2) + '\n' : renderStatus(s));
      return;
    }
    case 'reserve': {
      if (!values.title) throw new Error('reserve needs --title');
      const body: Record<string, unknown> = { title: values.title };
      if (values['starts-at']) body.startsAt = values['starts-at'];
      if (values['archive-days']) body.archiveDays = Number(values['archive-days']);
      if (values.password) body.password = values.password;
      const e = await api(config, url, 'POST', '/api/events', body);
      process.stdout.write(
        json
          ? JSON.stringify(e, null, 2) + '\n'
          : `Reserved "${e.title}"\n  event ID      ${e.eventId}\n  PIN           ${e.pin}\n  attendee link ${e.attendeeUrl}\n  host link     ${e.hostUrl}\n  dial in       sip:jitcast@${config.sipHost}:${config.sipPort}, key ${e.eventId}# then ${e.pin}#\n`,
      );
      return;
    }
    case 'events': {
      const list = await api(config, url, 'GET', '/api/events');
      const events = Array.isArray(list) ? list : (list.events ?? []);
      process.stdout.write(json ? JSON.stringify(events, null, 2) + '\n' : table(events.map((e: any) => ({ ...e, streams: e.streams?.length ?? 0 })), ['eventId', 'status', 'title', 'callers', 'streams', 'createdAt']));
      return;
    }
    case 'event': {
      const id = positionals[1];
      if (!id) throw new Error('event needs an event ID');
      const e = await api(config, url, 'GET', `/api/events/${encodeURIComponent(id)}`);
      process.stdout.write(JSON.stringify(e, null, 2) + '\n');
      return;
    }
    case 'report': {
      const id = positionals[1];
      if (!id) throw new Error('report needs an event ID');
      const r = await api(config, url, 'GET', `/api/events/${encodeURIComponent(id)}/report`);
      process.stdout.write(json ? JSON.stringify(r, null, 2) + '\n' : renderReport(r));
      return;
    }
    case 'end': {
      const id = positionals[1];
      if (!id) throw new Error('end needs an event ID');
      const e = await api(config, url, 'POST', `/api/events/${encodeURIComponent(id)}/end`);
      process.stdout.write(`event ${e.eventId} is ${e.status}\n`);
      return;
    }
    case 'keys':
      return keysCommand(config, url, positionals[1], positionals[2], values, json);
    case 'drain':
    case 'resume': {
      const id = positionals[1];
      if (!id) throw new Error(`${cmd} needs a node ID (see jitcast status)`);
      const v = await api(config, url, 'POST', `/api/cluster/voice-servers/${encodeURIComponent(id)}/${cmd}`);
      if (json) {
        process.stdout.write(JSON.stringify(v, null, 2) + '\n');
        return;
      }
      const busy = v.ports?.busy ?? 0;
      const detail = v.state === 'maintenance' ? (v.drained ? 'drained: no call left on it' : `draining: ${busy} busy channel(s) finish, then it reports drained`) : `${v.ports?.available ?? 0} free port(s)`;
      process.stdout.write(`voice server ${v.nodeId} is ${v.state} (${detail})\n`);
      return;
    }
    default:
      throw new Error(`unknown command '${cmd}' (try: jitcast help)`);
  }
}

main().catch((err: Error) => {
  const code = err instanceof JitcastError ? ` [${err.type}]` : '';
  process.stderr.write(`jitcast: ${err.message}${code}\n`);
  if (process.env.JITCAST_LOG_LEVEL === 'debug') process.stderr.write(`${err.stack}\n`);
  // Distinct codes, so a node supervisor does not restart what cannot start (runtime/node-supervisor.ts).
  if (err instanceof ConfigError) process.exit(EX_CONFIG);
  if (String((err as NodeJS.ErrnoException).code).startsWith('ERR_PARSE_ARGS')) process.exit(EX_USAGE);
  process.exit(1);
});

