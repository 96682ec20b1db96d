/**
 * A multi-process jitcast cluster for specs and benchmarks: N real node processes
 * (`node bin/jitcast.js node --roles … --nats-url … --redis-url … --db-url … --namespace …`) on
 * this machine, over the machine's own NATS, Redis and PostgreSQL (as in production), each node
 * with its own ports and data directory, all sharing `JITCAST_SECRET` and `JITCAST_API_KEYS`.
 *
 * - `startCluster()` starts every node, waits for each banner ("is up") and for the gateway's
 *   `GET /api/cluster` to list every node as available; on any failure it stops what it started.
 * - `kill9(id)` SIGKILLs a node's whole process group (the node and its ffmpeg children), as if
 *   its machine died; `stop()` ends every node (SIGINT, then SIGKILL after 15 s). Each node's output
 *   goes to `<dataDir>/node.log` as it comes. A process `exit` hook SIGKILLs whatever still runs.
 * - `restartNats()` / `restartRedis()` stop the machine's service and start it again with the
 *   commands of the env doc (machines/node-svc.md), then wait until it accepts connections.
 *
 * Storage: there is no shared-storage setting (no `JITCAST_STORAGE_DIR`); content storage lives in
 * `<dataDir>/storage/<center>/` and live HLS in `<dataDir>/live/`, per node, as on separate
 * machines. Files cross nodes over NATS (issue 3): attendee access fetches a live stream's files
 * from the encoder's node (`encoder-port.liveFile`), and an encoder on a node without content
 * storage sends each finished stream to a storage node (runtime/stream-upload.ts); so by default
 * nothing is shared, and front-door.spec.ts runs that way. `shareFiles` makes `<dataDir>/storage`
 * and `<dataDir>/live` of every node symlinks into one shared directory (a shared mount), for
 * specs that put content storage on several nodes: copying between storage centers is issue 4.
 *
 * Ports (the cluster specs' block, 11000-13999): each cluster takes a `slot` (0-5); node i (0-2)
 * of slot s gets HTTP 11080+3s+i, SIP 11060+3s+i, RTP 12000+50(3s+i)…+49, encoders
 * 13000+50(3s+i)…+49; sipp gets `sippPorts(slot)` (11100+16s…+11, four sipp processes at once).
 * Nodes may also be given explicit ports (the benchmarks use 14000-15999).
 *
 * Every fixed port of the specs and benchmarks is below 32768: Linux gives out 32768-60999 as the
 * source ports of outgoing connections (every Redis, NATS and PostgreSQL client here), so a fixed
 * port in that range is sometimes taken already (a CI run once failed on EADDRINUSE for one).
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { callPackets, tone, writePcap } from './pcap.ts';
import { dialInScenario, runSipp, type SippResult } from './sipp.ts';
import { apiRequest } from './node-process.ts';

const run = promisify(execFile);

/** The repository root (where `bin/jitcast.js` lives). */
export const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const CLUSTER_SECRET = 'cluster-spec-secret-0123456789abcdefghijklmnopqrstuvwxyz';
export const CLUSTER_API_KEY = 'cluster-spec-api-key-0123456789';
export const NATS_URL = 'nats://127.0.0.1:4222';
export const REDIS_URL = 'redis://127.0.0.1:6379';
/** The machine's PostgreSQL (trust auth, database `test`). */
export const POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/test';

/** How to start one node. */
export interface NodeSpec {
  /** Node ID (unique in the cluster; the harness prefixes nothing). */
  id: string;
  roles: string[];
  /** Data center. Default `dc1`. */
  dataCenter?: string;
  /** Ports; defaults come from the cluster's slot and the node's index. */
  httpPort?: number;
  sipPort?: number;
  rtpPorts?: string;
  encoderPorts?: string;
  /** Extra `JITCAST_*` (or other) environment for this node only. */
  env?: Record<string, string>;
  /** Extra command-line arguments for this node only. */
  args?: string[];
}

/** One running (or dead) node. */
export interface ClusterNode {
  spec: Required<Omit<NodeSpec, 'env' | 'args'>> & Pick<NodeSpec, 'env' | 'args'>;
  id: string;
  proc: ChildProcess;
  pid: number;
  dataDir: string;
  baseUrl: string;
  sipTarget: string;
  /** Everything the node printed so far (bounded). */
  output(): string;
  /** Whether the process is still running. */
  running(): boolean;
  /** When it exited (ms since epoch), if it did. */
  exitedAt?: number;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Options of `startCluster`. */
export interface ClusterOptions {
  /** Short name; the NATS namespace is `<name>-<pid>-<random>` so concurrent runs never meet. */
  name: string;
  nodes: NodeSpec[];
  /** Port slot 0-5 (see the header). Default 0. */
  slot?: number;
  /** The node whose HTTP API the harness asks (`GET /api/cluster`). Default the first with `gateway`. */
  gateway?: string;
  /** Environment for every node (e.g. `JITCAST_PORT_REUSE_TIMEOUT_S`). */
  env?: Record<string, string>;
  /** Pass `--db-url` (PostgreSQL) to every node. Default true. */
  postgres?: boolean;
  /** Pass `--redis-url` to every node. Default true. */
  redis?: boolean;
  /**
   * Symlink every node's `storage/` and `live/` into one shared directory (see the header). Default
   * false: live files and stored streams cross nodes over NATS; only several storage centers need it.
   */
  shareFiles?: boolean;
  /** Longest wait for all nodes to be up and seen, ms. Default 90 000. */
  startTimeoutMs?: number;
  /** Called with each line the harness logs (default: nothing). */
  log?: (msg: string) => void;
}

/** A started cluster. */
export interface Cluster {
  namespace: string;
  /** Root of every node's data directory (and of the shared directory when `shareFiles`). */
  root: string;
  nodes: ClusterNode[];
  node(id: string): ClusterNode;
  /** The node the harness asks for the cluster view. */
  gateway: ClusterNode;
  /** Calls the gateway's API (or another node's, with `via`) with the API key. */
  api(method: string, path: string, body?: unknown, via?: string): Promise<ApiResponse>;
  /** `GET /api/cluster` on the gateway (throws unless 200). */
  status(): Promise<any>;
  /** Waits until `GET /api/cluster` lists every given node as available (default: every running node). */
  waitForNodes(ids?: string[], timeoutMs?: number): Promise<any>;
  /** Waits until the cluster no longer lists `id` as available; returns the ms waited. */
  waitForNodeGone(id: string, timeoutMs?: number): Promise<number>;
  /** Runs `node bin/jitcast.js <args…> --url <gateway>` as an operator would; returns its output. */
  cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** SIGKILLs the node's process group (the node and its ffmpeg children); resolves once it exited. Returns the kill time. */
  kill9(id: string): Promise<number>;
  /** Starts a node again (after kill9/stop) with the same spec; waits for its banner. */
  restart(id: string): Promise<ClusterNode>;
  /** Stops one node (SIGINT, SIGKILL after 15 s) and keeps its log. */
  stopNode(id: string): Promise<void>;
  /** Stops every node and writes each node's log into its data directory. Idempotent. */
  stop(): Promise<void>;
}

export interface ApiResponse {
  status: number;
  body: any;
  text: string;
}

/** In-memory output kept per node (the whole output also goes to `<dataDir>/node.log` as it comes). */
const MAX_OUTPUT = 64 * 1024 * 1024;
const live = new Set<ChildProcess>();
let exitHook = false;

function ensureExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  // A spec that dies must not leave nodes behind: kill each process group we started (by pid).
  process.on('exit', () => {
    for (const p of live) killGroup(p, 'SIGKILL');
  });
}

function killGroup(p: ChildProcess, signal: NodeJS.Signals): void {
  if (p.pid === undefined || p.exitCode !== null || p.signalCode !== null) {
    // The leader is gone; its children (ffmpeg) may still be in the group.
    if (p.pid !== undefined) {
      try {
        process.kill(-p.pid, signal);
      } catch {
        /* group empty */
      }
    }
    return;
  }
  try {
    process.kill(-p.pid, signal);
  } catch {
    try {
      p.kill(signal);
    } catch {
      /* gone */
    }
  }
}

/** Ports of node `index` (0-2) in `slot` (0-5). */
export function nodePorts(slot: number, index: number): { httpPort: number; sipPort: number; rtpPorts: string; encoderPorts: string } {
  if (slot < 0 || slot > 5 || index < 0 || index > 2) throw new Error(`port slot ${slot} / node index ${index} out of range (slots 0-5, 3 nodes each)`);
  const k = slot * 3 + index;
  return {
    httpPort: 11080 + k,
    sipPort: 11060 + k,
    rtpPorts: `${12000 + 50 * k}-${12000 + 50 * k + 49}`,
    encoderPorts: `${13000 + 50 * k}-${13000 + 50 * k + 49}`,
  };
}

/**
 * sipp's ports in `slot` (11100+16·slot … +11): SIP ports base+0…3 and media ports base+4, +5,
 * +8, +9, for up to four sipp processes at once (sipp binds its media port p and p+2: audio, video).
 */
export function sippPorts(slot: number): { sip: (i: number) => number; media: (i: number) => number } {
  const base = 11100 + 16 * slot;
  return {
    sip: (i) => base + (i % 4),
    media: (i) => base + 4 + [0, 1, 4, 5][i % 4]!,
  };
}

/** A unique NATS namespace for a run. */
export function uniqueNamespace(name: string): string {
  return `${name.replace(/[^A-Za-z0-9_-]/g, '-')}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

export function apiCall(baseUrl: string, method: string, path: string, body?: unknown, timeoutMs = 10_000): Promise<ApiResponse> {
  return apiRequest(baseUrl, CLUSTER_API_KEY, method, path, body, { timeoutMs });
}

/** Polls `fn` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitUntil<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000, everyMs = 200): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= until) break;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The node IDs `GET /api/cluster` lists as available. */
export function availableNodeIds(status: any): string[] {
  return (status?.nodes ?? []).filter((n: any) => n.available !== false).map((n: any) => String(n.id));
}

/** `NODE_PROF_DIR=<dir>`: each node writes a V8 CPU profile there when it exits (for benchmarks; Node refuses --cpu-prof in NODE_OPTIONS). */
function profileArgs(): string[] {
  const dir = process.env.NODE_PROF_DIR;
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${resolve(dir)}`] : [];
}

function spawnNode(spec: ClusterNode['spec'], o: { namespace: string; dataDir: string; env: Record<string, string>; postgres: boolean; redis: boolean }): ClusterNode {
  const args = [
    'bin/jitcast.js', 'node',
    '--roles', spec.roles.join(','),
    '--node-id', spec.id,
    '--data-center', spec.dataCenter,
    '--nats-url', NATS_URL,
    ...(o.redis ? ['--redis-url', REDIS_URL] : []),
    ...(o.postgres ? ['--db-url', POSTGRES_URL] : []),
    '--namespace', o.namespace,
    '--http-port', String(spec.httpPort),
    '--sip-port', String(spec.sipPort),
    '--rtp-ports', spec.rtpPorts,
    '--encoder-ports', spec.encoderPorts,
    '--data-dir', o.dataDir,
    ...(spec.args ?? []),
  ];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    JITCAST_SECRET: CLUSTER_SECRET,
    JITCAST_API_KEYS: CLUSTER_API_KEY,
    JITCAST_LOG_LEVEL: 'info',
    ...o.env,
    ...spec.env,
  };
  // Flags and JITCAST_* both set a key; the environment wins (cluster.config.ts). Drop inherited
  // JITCAST_* the spec did not ask for, so a developer's shell cannot change the cluster.
  for (const k of Object.keys(env)) {
    if (k.startsWith('JITCAST_') && !(k in (o.env ?? {})) && !(k in (spec.env ?? {})) && !['JITCAST_SECRET', 'JITCAST_API_KEYS', 'JITCAST_LOG_LEVEL'].includes(k)) delete env[k];
  }
  // Its own process group: kill9 takes the node and its ffmpeg children down together.
  const proc = spawn(process.execPath, [...profileArgs(), ...args], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(proc);
  let out = '';
  // Everything the node prints goes to <dataDir>/node.log as it comes (appended across restarts).
  const file = createWriteStream(join(o.dataDir, 'node.log'), { flags: 'a' });
  file.on('error', () => {});
  file.write(`--- ${new Date().toISOString()} node ${spec.id} started: node ${args.join(' ')}\n`);
  const keep = (d: Buffer) => {
    out += d;
    file.write(d);
    if (out.length > MAX_OUTPUT) out = out.slice(-MAX_OUTPUT / 2);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const node: ClusterNode = {
    spec,
    id: spec.id,
    proc,
    pid: proc.pid!,
    dataDir: o.dataDir,
    baseUrl: `http://127.0.0.1:${spec.httpPort}`,
    sipTarget: `127.0.0.1:${spec.sipPort}`,
    output: () => out,
    running: () => proc.exitCode === null && proc.signalCode === null,
    exited: new Promise((r) =>
      proc.once('exit', (code, signal) => {
        node.exitedAt = Date.now();
        live.delete(proc);
        // 'close' follows once stdout/stderr are drained: only then is the log complete.
        proc.once('close', () => file.end(`--- ${new Date().toISOString()} node ${spec.id} exited (${code ?? signal})\n`, () => r({ code, signal })));
      }),
    ),
  };
  return node;
}

function waitBanner(node: ClusterNode, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolveUp, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`node ${node.id} did not print "is up" in ${timeoutMs} ms:\n${node.output().slice(-3000)}`));
    }, timeoutMs);
    const check = () => {
      if (/is up/.test(node.output())) {
        cleanup();
        resolveUp();
      }
    };
    const onExit = (code: number | null, signal: string | null) => {
      cleanup();
      reject(new Error(`node ${node.id} exited (${code ?? signal}) before it was up:\n${node.output().slice(-3000)}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      node.proc.stdout!.off('data', check);
      node.proc.off('exit', onExit);
    };
    node.proc.stdout!.on('data', check);
    node.proc.once('exit', onExit);
    check();
  });
}

/** Starts the cluster; on failure, stops every node it started and rethrows. */
export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  ensureExitHook();
  const slot = o.slot ?? 0;
  const namespace = uniqueNamespace(o.name);
  const root = mkdtempSync(join(tmpdir(), `jitcast-cluster-${o.name}-`));
  const log = o.log ?? (() => {});
  const shared = join(root, 'shared');
  if (o.shareFiles) {
    mkdirSync(join(shared, 'storage'), { recursive: true });
    mkdirSync(join(shared, 'live'), { recursive: true });
  }
  const specs: ClusterNode['spec'][] = o.nodes.map((n, i) => ({
    ...nodePorts(slot, i),
    dataCenter: 'dc1',
    ...n,
  }));
  const dataDirOf = (id: string) => {
    const dir = join(root, id);
    mkdirSync(dir, { recursive: true });
    if (o.shareFiles) {
      for (const sub of ['storage', 'live']) if (!existsSync(join(dir, sub))) symlinkSync(join(shared, sub), join(dir, sub));
    }
    return dir;
  };
  const spawnOpts = (id: string) => ({ namespace, dataDir: dataDirOf(id), env: o.env ?? {}, postgres: o.postgres ?? true, redis: o.redis ?? true });
  const nodes: ClusterNode[] = [];
  const gatewayId = o.gateway ?? specs.find((s) => s.roles.includes('gateway') || s.roles.includes('all'))?.id;
  if (!gatewayId) throw new Error('startCluster: no node runs the gateway role');
  const timeoutMs = o.startTimeoutMs ?? 90_000;
  let stopping: Promise<void> | undefined;

  const stopOne = async (node: ClusterNode) => {
    if (node.running()) {
      // SIGINT to the node only: it stops its own ffmpeg children (a second SIGINT from us could
      // leave a playlist truncated, FIELD-NOTES "ffmpeg").
      node.proc.kill('SIGINT');
      const t = setTimeout(() => killGroup(node.proc, 'SIGKILL'), 15_000);
      await node.exited;
      clearTimeout(t);
    }
    // ffmpeg children that outlived their node (same process group): end them.
    killGroup(node.proc, 'SIGKILL');
  };

  const cluster: Cluster = {
    namespace,
    root,
    nodes,
    node(id) {
      const n = nodes.find((x) => x.id === id);
      if (!n) throw new Error(`no node ${id} in this cluster`);
      return n;
    },
    get gateway() {
      return cluster.node(gatewayId);
    },
    api(method, path, body, via) {
      return apiCall((via ? cluster.node(via) : cluster.gateway).baseUrl, method, path, body);
    },
    async status() {
      const r = await apiCall(cluster.gateway.baseUrl, 'GET', '/api/cluster', undefined, 5000);
      if (r.status !== 200) throw new Error(`GET /api/cluster: ${r.status} ${r.text.slice(0, 300)}`);
      return r.body;
    },
    async waitForNodes(ids, ms = timeoutMs) {
      const want = ids ?? nodes.filter((n) => n.running()).map((n) => n.id);
      return waitUntil(`GET /api/cluster to list ${want.join(', ')}`, async () => {
        const s = await cluster.status();
        const seen = availableNodeIds(s);
        return want.every((id) => seen.includes(id)) ? s : undefined;
      }, ms, 250);
    },
    async waitForNodeGone(id, ms = 15_000) {
      const t0 = Date.now();
      await waitUntil(`GET /api/cluster to drop ${id}`, async () => {
        const s = await cluster.status();
        return availableNodeIds(s).includes(id) ? undefined : true;
      }, ms, 100);
      return Date.now() - t0;
    },
    async cli(args) {
      const env: NodeJS.ProcessEnv = { ...process.env, JITCAST_API_KEYS: CLUSTER_API_KEY, JITCAST_SECRET: CLUSTER_SECRET, JITCAST_DATA_DIR: join(root, 'cli') };
      try {
        const r = await run(process.execPath, ['bin/jitcast.js', ...args, '--url', cluster.gateway.baseUrl], { cwd: REPO, env, timeout: 60_000 });
        return { code: 0, stdout: r.stdout, stderr: r.stderr };
      } catch (err) {
        const e = err as { code?: number; stdout?: string; stderr?: string };
        return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
      }
    },
    async kill9(id) {
      const node = cluster.node(id);
      const at = Date.now();
      killGroup(node.proc, 'SIGKILL');
      await node.exited;
      log(`killed ${id} (SIGKILL, process group ${node.pid})`);
      return at;
    },
    async restart(id) {
      const old = cluster.node(id);
      if (old.running()) await stopOne(old);
      const fresh = spawnNode(old.spec, spawnOpts(id));
      nodes[nodes.indexOf(old)] = fresh;
      await waitBanner(fresh, timeoutMs);
      log(`restarted ${id}`);
      return fresh;
    },
    async stopNode(id) {
      await stopOne(cluster.node(id));
    },
    stop() {
      return (stopping ??= (async () => {
        await Promise.all(nodes.map((n) => stopOne(n)));
        log(`cluster ${namespace} stopped; logs in ${root}/<node>/node.log`);
      })());
    },
  };

  try {
    for (const spec of specs) nodes.push(spawnNode(spec, spawnOpts(spec.id)));
    await Promise.all(nodes.map((n) => waitBanner(n, timeoutMs)));
    log(`all ${nodes.length} nodes printed "is up"`);
    await cluster.waitForNodes(nodes.map((n) => n.id));
    log(`GET /api/cluster lists ${nodes.map((n) => n.id).join(', ')}`);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

// ---------------------------------------------------------------------------------------------
// The machine's NATS and Redis (env doc machines/node-svc.md: "the same command starts one that
// has stopped").

const NATS_START = ['/usr/sbin/start-stop-daemon', ['--start', '--oknodo', '--background', '--exec', '/usr/sbin/nats-server', '--', '-a', '127.0.0.1', '-p', '4222', '-js', '-sd', '/var/lib/nats-server', '-l', '/var/log/nats-server.log']] as const;
const REDIS_START = ['redis-server', ['--daemonize', 'yes', '--bind', '127.0.0.1', '-::1', '--port', '6379', '--save', '', '--appendonly', 'no', '--dir', '/var/lib/redis', '--logfile', '/var/log/redis/ci.log']] as const;

/** The pid listening on TCP `port` on this machine (from /proc), or undefined. */
export function listenerPid(port: number): number | undefined {
  const inodes = new Set<string>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length < 10) continue;
      const localPort = parseInt(c[1]!.split(':').pop()!, 16);
      if (localPort === port && c[3] === '0A') inodes.add(c[9]!);
    }
  }
  if (inodes.size === 0) return undefined;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1]!)) return Number(pid);
      } catch {
        /* fd closed meanwhile */
      }
    }
  }
  return undefined;
}

/** Whether a TCP connection to 127.0.0.1:`port` succeeds and (optionally) the first bytes match. */
export function probeTcp(port: number, opts: { send?: string; expect?: RegExp; timeoutMs?: number } = {}): Promise<boolean> {
  return new Promise((resolveProbe) => {
    let done = false;
    let data = '';
    const s: Socket = connect({ host: '127.0.0.1', port });
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      resolveProbe(ok);
    };
    const t = setTimeout(() => finish(false), opts.timeoutMs ?? 1000);
    s.on('error', () => finish(false));
    s.on('connect', () => {
      if (opts.send) s.write(opts.send);
      if (!opts.expect) finish(true);
    });
    s.on('data', (d) => {
      data += d;
      if (opts.expect?.test(data)) finish(true);
    });
  });
}

/** NATS accepts a client: it greets with `INFO {…}`. */
export const natsUp = () => probeTcp(4222, { expect: /^INFO /m });
/** Redis answers PING. */
export const redisUp = () => probeTcp(6379, { send: 'PING\r\n', expect: /\+PONG/ });

async function stopListener(port: number, what: string): Promise<number | undefined> {
  const pid = listenerPid(port);
  if (pid === undefined) return undefined;
  process.kill(pid, 'SIGTERM');
  await waitUntil(`${what} (pid ${pid}) to exit`, () => (existsSync(`/proc/${pid}`) && !/^\S+ \(\S+\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')) ? undefined : true), 10_000, 50);
  return pid;
}

/** What a restart did and how long each part took (ms). */
export interface ServiceRestart {
  stoppedPid?: number;
  downMs: number;
  startMs: number;
}

/**
 * Stops the machine's NATS (SIGTERM to the pid listening on 4222), keeps it down `downMs`, starts
 * it with the env doc's command and waits until it greets a client.
 */
export async function restartNats(downMs = 0): Promise<ServiceRestart> {
  const stoppedPid = await stopListener(4222, 'nats-server');
  const t0 = Date.now();
  if (downMs) await sleep(downMs);
  spawnSync(NATS_START[0], [...NATS_START[1]], { stdio: 'ignore' });
  const s0 = Date.now();
  await waitUntil('NATS to accept connections', async () => ((await natsUp()) ? true : undefined), 20_000, 100);
  return { stoppedPid, downMs: Date.now() - t0, startMs: Date.now() - s0 };
}

/**
 * Stops the machine's Redis (`SHUTDOWN NOSAVE` through redis-cli; SIGTERM to its pid if that
 * fails), keeps it down `downMs`, starts it with the env doc's command and waits for PONG.
 * Redis keeps nothing on disk here, so every key is gone after the restart.
 */
export async function restartRedis(downMs = 0): Promise<ServiceRestart> {
  const pid = listenerPid(6379);
  spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', '6379', 'shutdown', 'nosave'], { stdio: 'ignore', timeout: 5000 });
  if (pid !== undefined && existsSync(`/proc/${pid}`)) await stopListener(6379, 'redis-server').catch(() => undefined);
  const t0 = Date.now();
  if (downMs) await sleep(downMs);
  spawnSync(REDIS_START[0], [...REDIS_START[1]], { stdio: 'ignore' });
  const s0 = Date.now();
  await waitUntil('Redis to answer PING', async () => ((await redisUp()) ? true : undefined), 20_000, 100);
  return { stoppedPid: pid, downMs: Date.now() - t0, startMs: Date.now() - s0 };
}

/** Makes sure NATS and Redis run (starts whichever is down) before a cluster spec. */
export async function ensureServices(): Promise<void> {
  if (!(await natsUp())) await restartNats();
  if (!(await redisUp())) await restartRedis();
}

// ---------------------------------------------------------------------------------------------
// Calls (sipp) and readers of `GET /api/cluster`.

/** A placed call: sipp's outcome, and when it was started. */
export interface PlacedCall {
  startedAt: number;
  done: Promise<SippResult & { endedAt: number }>;
}

/**
 * Places one call to `target` that keys `event` (ID then PIN; nothing when undefined) while
 * sending a 1 kHz tone, holds `holdMs` from the INVITE, then hangs up (or, with `expectBye`,
 * waits for jitcast to hang up).
 */
export function placeCall(o: {
  dir: string;
  name: string;
  target: string;
  event?: { eventId: string; pin: string };
  holdMs: number;
  localPort: number;
  mediaPort: number;
  expectBye?: boolean;
  freqHz?: number;
  timeoutS?: number;
  /** Aborting it kills the sipp process at once. */
  signal?: AbortSignal;
}): PlacedCall {
  const keys = [];
  if (o.event) {
    const idKeys = `${o.event.eventId}#`;
    const pinAt = 1500 + idKeys.length * 200 + 400;
    keys.push({ atMs: 1500, digits: idKeys }, { atMs: pinAt, digits: `${o.event.pin}#` });
  }
  const pcap = join(o.dir, `${o.name}.pcap`);
  writePcap(pcap, callPackets({ durationMs: o.holdMs, audio: tone(o.freqHz ?? 1000), keys, eventPt: 101 }));
  const scenario = dialInScenario(o.dir, o.name, { pcap, holdMs: o.holdMs, ending: o.expectBye ? 'expect-bye' : 'caller-bye' });
  const startedAt = Date.now();
  const done = runSipp({
    scenario,
    target: o.target,
    localPort: o.localPort,
    mediaPort: o.mediaPort,
    cwd: o.dir,
    timeoutS: o.timeoutS ?? Math.ceil(o.holdMs / 1000) + 30,
    ...(o.signal ? { signal: o.signal } : {}),
  }).then((r) => ({ ...r, endedAt: Date.now() }));
  return { startedAt, done };
}

/** Milliseconds from the INVITE until the PIN's `#` has been keyed by `placeCall`. */
export function keysDoneMs(eventId: string, pin: string): number {
  const idKeys = `${eventId}#`;
  const pinAt = 1500 + idKeys.length * 200 + 400;
  return pinAt + (pin.length + 1) * 200;
}

/**
 * A scenario that sends an INVITE and expects a final error response `status` (e.g. 503 when no
 * port is free), then ACKs it (RFC 3261 §17.1.1.3).
 */
export function refusedScenario(dir: string, name: string, status: number): string {
  const xml = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="jitcast ${name}">
  <send retrans="500"><![CDATA[
      INVITE sip:jitcast@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:jitcast@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="${status}"/>
  <send><![CDATA[
      ACK sip:jitcast@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: sipp <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]></send>
</scenario>
`;
  const file = join(dir, `${name}.xml`);
  writeFileSync(file, xml);
  return file;
}

/** Every channel of every voice server in a `GET /api/cluster` answer, with its node. */
export function channelsOf(status: any): Array<{ nodeId: string; port: number; phase: string; eventId?: string; caller: string; channelId: string; since: string; stats?: any }> {
  return (status?.voiceServers ?? []).flatMap((v: any) => (v?.channels ?? []).map((c: any) => ({ ...c, nodeId: v.nodeId })));
}

/** The voice server of `nodeId` in a `GET /api/cluster` answer. */
export function voiceServerOf(status: any, nodeId: string): any | undefined {
  return (status?.voiceServers ?? []).find((v: any) => v?.nodeId === nodeId);
}

/** Active streams (monitoring's table) of an event in a `GET /api/cluster` answer. */
export function streamsOf(status: any, eventId?: string): any[] {
  return (status?.streams ?? []).filter((s: any) => eventId === undefined || s.eventId === eventId);
}

// ---------------------------------------------------------------------------------------------
// Node logs: every line starts with `[HH:MM:SS.mmmZ]` (UTC), which times what a node did to the ms.

/** One timed log line of a node. */
export interface LogLine {
  at: number;
  line: string;
}

/** The node's log lines matching `re` stamped at or after `sinceMs` − 1 s (ms since epoch, same clock as Date.now()). */
export function logLines(node: ClusterNode, re: RegExp, sinceMs = 0): LogLine[] {
  const out: LogLine[] = [];
  for (const line of node.output().split('\n')) {
    const m = /^\[(\d\d):(\d\d):(\d\d)\.(\d{3})Z\]/.exec(line);
    if (!m || !re.test(line)) continue;
    // The stamp has no date: take the day that puts it nearest to now.
    const now = Date.now();
    const day = new Date(now);
    let at = Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate(), +m[1]!, +m[2]!, +m[3]!, +m[4]!);
    if (at - now > 12 * 3600_000) at -= 86_400_000;
    if (now - at > 12 * 3600_000) at += 86_400_000;
    if (at >= sinceMs - 1000) out.push({ at, line });
  }
  return out;
}

/** Waits for the first log line of `node` matching `re` (see logLines). */
export function waitForLog(node: ClusterNode, re: RegExp, sinceMs: number, timeoutMs = 15_000): Promise<LogLine> {
  return waitUntil(`${node.id} to log ${re}`, () => logLines(node, re, sinceMs)[0], timeoutMs, 50);
}

/** The router's view of voice server `nodeId` in a `GET /api/cluster` answer (first front door), or undefined. */
export function routeOf(status: any, nodeId: string): { nodeId: string; routable: boolean; state?: string; because?: string; freePorts?: number } | undefined {
  return (status?.sipRouters?.[0]?.voiceServers ?? []).find((v: any) => v?.nodeId === nodeId);
}
