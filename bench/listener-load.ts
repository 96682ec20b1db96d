/**
 * Listener load (issue 5): simulated HLS listeners against one node's attendee access, side by side
 * with nginx serving the same files on the same machine. Target: at least half of nginx's rate
 * (the issue measured nginx at about 32,000 segment requests/s here: ~15,000 listeners polling
 * every 2 s), with p99 segment latency under 100 ms.
 *
 * The node runs in a child process (this file with `--serve`): gateway, attendee access and
 * monitoring (with the usage actor) in embedded mode, one live stream whose dataset it pushes every
 * second as an encoder would, and whose files (a playlist of 8 segments of ~12 KB, like 2 s of
 * 48 kb/s AAC) sit on its disk. nginx (Debian `nginx-light`, `worker_processes auto`, access log
 * off) serves the very same directory on the same URL paths. The load generator is wrk (Debian), a
 * C program, so the generator is not the bottleneck it would be in Node: 1 thread, 64 keep-alive
 * connections, each request a different listener's URL (listener ID and auth code in the query, as
 * hls.js sends them).
 *
 * jitcast runs twice: the node alone, and with one listener worker (config `listenerWorkers`: a child
 * process accepting on the same port and answering held segments itself, runtime/listener-workers.ts).
 *
 * Two request mixes, each for `durationS` after a warm-up, first on nginx then on jitcast:
 * - segments: only segment requests (the issue's "segment requests/s");
 * - listener: what a polling listener sends every 2 s: its media playlist and the next segment
 *   (listeners served = requests/s × 2 s / 2 requests).
 * wrk is closed-loop (each connection sends its next request when the last is answered), so the
 * figures are the saturation rate and the latency at that rate; p99 is wrk's over all requests of
 * the run. Both servers and wrk share the machine's 2 cores.
 *
 * Ports 11620 (nginx) and 11621 (jitcast); traffic stays on 127.0.0.1.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { cpuPercent, sampleTree, waitQuiet } from './support/proc.ts';
import { fmt, type BenchOptions, type BenchResult, type Row } from './support/report.ts';

const NGINX_PORT = 11620;
const NODE_PORT = 11621;
const SECRET = 'bench-secret-0123456789abcdefghijklmnopqrstuvwxyz';
const EVENT = '12345674';
const STREAM = `${EVENT}-bench-node-10002-loyw3v28`;
const SEGMENTS = 8;
const SEGMENT_BYTES = 12_000;
/** Distinct listeners whose URLs the generator cycles through. */
const LISTENERS = 2000;
const CONNECTIONS = 64;
/** The jitcast runs: the node alone, and with one listener worker process (config listenerWorkers). */
const VARIANTS: Array<[string, number]> = [['jitcast', 0], ['jitcast+worker', 1]];
const SELF = fileURLToPath(import.meta.url);
const REPO = join(SELF, '..', '..');

/** What one wrk run measured. */
interface WrkFigures {
  rps: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
  /** CPU of the server's processes during the run, % of one core. */
  serverCpuPct?: number;
}

function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** wrk latency ("812.00us", "1.20ms", "2.00s") in ms. */
function ms(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

/** Parses wrk's `--latency` report. */
export function parseWrk(out: string): WrkFigures {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const p50 = /^\s+50%\s+(\S+)/m.exec(out)?.[1];
  const p99 = /^\s+99%\s+(\S+)/m.exec(out)?.[1];
  const e = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return {
    rps,
    requests,
    p50Ms: p50 ? ms(p50) : NaN,
    p99Ms: p99 ? ms(p99) : NaN,
    errors: e ? e.slice(1).reduce((s, x) => s + Number(x), 0) : 0,
    non2xx,
  };
}

/** A wrk Lua script that sends `paths` round-robin (each thread starting at its own offset). */
function wrkScript(file: string, paths: string[]): void {
  const list = paths.map((p) => `"${p}"`).join(',\n');
  writeFileSync(
    file,
    `local paths = {\n${list}\n}\nlocal i = 0\nfunction request()\n  i = i % #paths + 1\n  return wrk.format("GET", paths[i])\nend\n`,
  );
}

/** A wrk run, with the CPU the server's process tree (`serverPid`) used meanwhile. */
function measure(url: string, script: string, durationS: number, serverPid: number): WrkFigures {
  const a = sampleTree(serverPid);
  const r = runWrk(url, script, durationS);
  const b = sampleTree(serverPid);
  return { ...r, serverCpuPct: cpuPercent(a, b) };
}

function runWrk(url: string, script: string, durationS: number): WrkFigures & { raw: string } {
  const r = spawnSync('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${durationS}s`, '--latency', '--timeout', '5s', '-s', script, url], { encoding: 'utf8', timeout: (durationS + 30) * 1000 });
  if (r.status !== 0) throw new Error(`wrk failed (${r.status}): ${r.stderr || r.stdout}`);
  return { ...parseWrk(r.stdout), raw: r.stdout };
}

/** Writes the stream's files under `<dataDir>/live/<stream>/` (what an encoder leaves there). */
function writeStream(dataDir: string): void {
  const dir = join(dataDir, 'live', STREAM);
  mkdirSync(dir, { recursive: true });
  const lines = ['#EXTM3U', '#EXT-X-VERSION:3', '#EXT-X-TARGETDURATION:2', '#EXT-X-MEDIA-SEQUENCE:100'];
  for (let i = 0; i < SEGMENTS; i++) {
    const n = String(100 + i).padStart(5, '0');
    lines.push('#EXTINF:2.000,', `seg${n}.ts`);
    // TS packets of filler: sync byte every 188 bytes, like the real thing.
    const b = randomBytes(SEGMENT_BYTES);
    for (let p = 0; p < b.length; p += 188) b[p] = 0x47;
    writeFileSync(join(dir, `seg${n}.ts`), b);
  }
  writeFileSync(join(dir, 'index.m3u8'), lines.join('\n') + '\n');
}

function nginxConf(dir: string, dataDir: string): string {
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes auto;
${process.getuid?.() === 0 ? 'user root;\n' : ''}pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'nginx-error.log')} warn;
daemon off;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  server {
    listen 127.0.0.1:${NGINX_PORT};
    location /s/ { alias ${join(dataDir, 'live')}/; add_header Cache-Control no-cache; }
  }
}
`,
  );
  return conf;
}

async function waitHttp(url: string, what: string, limitMs = 60_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.status === 200) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${what} not answering 200 at ${url} within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function stop(p: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    p.kill(signal);
  });
}

/** The node side (`--serve DATA_DIR`): one embedded node, and the stream's dataset pushed every second. */
async function serve(dataDir: string, listenerWorkers: string): Promise<void> {
  const { loadConfig } = await import('../cluster.config.ts');
  const { startNode } = await import('../runtime/node.ts');
  const { EVENTS } = await import('../runtime/contracts.ts');
  const config = loadConfig(
    { nodeId: 'bench-node', dataDir, httpPort: String(NODE_PORT), secret: SECRET, apiKeys: 'bench-api-key-0123456789', roles: 'gateway,attendee-access,monitoring', logLevel: 'warn', healthTestIntervalS: '0', listenerWorkers },
    {},
  );
  const node = await startNode(config);
  const push = () =>
    node.broker.broadcast(EVENTS.streamDataset, {
      streamId: STREAM, eventId: EVENT, format: 'hls', port: 10002, nodeId: config.nodeId, dataCenter: config.dataCenter, url: `/s/${STREAM}/index.m3u8`,
      startedAt: new Date(Date.now() - 60_000).toISOString(), lastSeenAt: new Date().toISOString(),
    });
  await push();
  setInterval(push, 1000);
  process.stdout.write('listener-load node ready\n');
  const bye = () => void node.stop().then(() => process.exit(0));
  process.on('SIGTERM', bye);
  process.on('SIGINT', bye);
}

export async function listenerLoad(o: BenchOptions): Promise<BenchResult> {
  const t0 = performance.now();
  const durationS = o.quick ? 5 : 15;
  const missing = ['wrk', 'nginx'].filter((c) => !which(c) && !(c === 'nginx' && which('/usr/sbin/nginx')));
  if (missing.length > 0) {
    const note = `needs ${missing.join(' and ')} (apt-get install -y wrk nginx-light)`;
    return { name: 'listener-load', seconds: 0, details: { missing }, rows: [{ name: 'listener load', figure: 'n/a', unit: '', target: '≥ ½ nginx', notes: note }] };
  }
  const { signAuthCode } = await import('../codecs/token.ts');
  const dataDir = join(o.dir, 'data');
  writeStream(dataDir);
  const expiry = Math.floor(Date.now() / 1000) + 3600;
  const code = signAuthCode(SECRET, EVENT, STREAM, expiry);
  const ids = Array.from({ length: LISTENERS }, () => randomBytes(9).toString('base64url'));
  const seg = (i: number) => `seg${String(100 + (i % SEGMENTS)).padStart(5, '0')}.ts`;
  const q = (l: string) => `?a=${code}&l=${l}`;
  const segmentPaths = ids.map((l, i) => `/s/${STREAM}/${seg(i)}${q(l)}`);
  const listenerPaths = ids.flatMap((l, i) => [`/s/${STREAM}/index.m3u8${q(l)}`, `/s/${STREAM}/${seg(i)}${q(l)}`]);
  const scripts = { segments: join(o.dir, 'segments.lua'), listener: join(o.dir, 'listener.lua') };
  wrkScript(scripts.segments, segmentPaths);
  wrkScript(scripts.listener, listenerPaths);

  const results: Record<string, WrkFigures> = {};
  let nginx: ChildProcess | undefined;
  let node: ChildProcess | undefined;
  let nodeOut = '';
  try {
    // nginx first, alone on the machine.
    const nginxBin = which('nginx') ?? '/usr/sbin/nginx';
    let nginxErr = '';
    nginx = spawn(nginxBin, ['-c', nginxConf(o.dir, dataDir), '-p', o.dir, '-e', join(o.dir, 'nginx-error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
    nginx.stderr!.on('data', (d: Buffer) => (nodeOut = (nginxErr += d.toString()).slice(-5000)));
    await waitHttp(`http://127.0.0.1:${NGINX_PORT}${listenerPaths[0]}`, 'nginx');
    for (const mix of ['segments', 'listener'] as const) {
      runWrk(`http://127.0.0.1:${NGINX_PORT}`, scripts[mix], 2);
      results[`nginx ${mix}`] = measure(`http://127.0.0.1:${NGINX_PORT}`, scripts[mix], durationS, nginx.pid!);
      o.log(`listener-load nginx ${mix}: ${fmt(results[`nginx ${mix}`]!.rps, 0)} req/s, p99 ${fmt(results[`nginx ${mix}`]!.p99Ms)} ms`);
    }
    await stop(nginx, 'SIGQUIT');
    nginx = undefined;

    // jitcast alone, then with one listener worker (config listenerWorkers): a second process on the same port.
    for (const [variant, workers] of VARIANTS) {
      node = spawn(process.execPath, ['--import', 'tsx', SELF, '--serve', dataDir, String(workers)], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
      node.stdout!.on('data', (d: Buffer) => (nodeOut = (nodeOut + d.toString()).slice(-20_000)));
      node.stderr!.on('data', (d: Buffer) => (nodeOut = (nodeOut + d.toString()).slice(-20_000)));
      // The playlist first, as a player does: attendee access keeps a segment once a playlist lists it.
      await waitHttp(`http://127.0.0.1:${NODE_PORT}${listenerPaths[0]}`, 'jitcast node');
      // The node's start (PGlite's first open for the usage rows) settles before measuring.
      await waitQuiet(40, o.quick ? 10 : 30, o.log);
      for (const mix of ['segments', 'listener'] as const) {
        runWrk(`http://127.0.0.1:${NODE_PORT}`, scripts[mix], 2);
        results[`${variant} ${mix}`] = measure(`http://127.0.0.1:${NODE_PORT}`, scripts[mix], durationS, node.pid!);
        o.log(`listener-load ${variant} ${mix}: ${fmt(results[`${variant} ${mix}`]!.rps, 0)} req/s, p99 ${fmt(results[`${variant} ${mix}`]!.p99Ms)} ms`);
      }
      if (variant === 'jitcast') {
        // The usage actor counted the simulated listeners: the report's raw material.
        const r = await fetch(`http://127.0.0.1:${NODE_PORT}/metrics`);
        const listenersSeen = Number(/^jitcast_listeners (\d+)/m.exec(await r.text())?.[1] ?? NaN);
        results.usage = { rps: listenersSeen, requests: 0, p50Ms: NaN, p99Ms: NaN, errors: 0, non2xx: 0 };
      }
      await stop(node);
      node = undefined;
    }
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${nodeOut.slice(-3000)}`);
  } finally {
    await stop(nginx, 'SIGQUIT');
    await stop(node);
  }

  const rows: Row[] = [];
  for (const [variant, workers] of VARIANTS)
  for (const mix of ['segments', 'listener'] as const) {
    const n = results[`nginx ${mix}`]!;
    const j = results[`${variant} ${mix}`]!;
    const what = workers > 0 ? ` (+${workers} listener worker)` : '';
    const ratio = j.rps / n.rps;
    const listeners = mix === 'listener' ? ` = ${fmt(j.rps, 0)} listeners polling every 2 s (nginx: ${fmt(n.rps, 0)})` : '';
    rows.push({
      name: (mix === 'segments' ? 'listener load: segments/s' : 'listener load: playlist+segment/s') + what,
      figure: Math.round(j.rps),
      unit: 'req/s',
      target: `≥ ${fmt(n.rps / 2, 0)} (½ nginx)`,
      notes:
        `jitcast ${fmt(j.rps, 0)} req/s, p50 ${fmt(j.p50Ms)} ms, p99 ${fmt(j.p99Ms)} ms${j.errors || j.non2xx ? `, ${j.errors} socket errors, ${j.non2xx} non-2xx` : ''}; ` +
        `nginx ${fmt(n.rps, 0)} req/s, p50 ${fmt(n.p50Ms)} ms, p99 ${fmt(n.p99Ms)} ms; jitcast/nginx ${fmt(ratio * 100, 0)} %${listeners}; ` +
        `server CPU jitcast ${fmt(j.serverCpuPct ?? NaN, 0)} % of a core (${fmt(j.rps / ((j.serverCpuPct ?? NaN) / 100), 0)} req per CPU-s), nginx ${fmt(n.serverCpuPct ?? NaN, 0)} % (${fmt(n.rps / ((n.serverCpuPct ?? NaN) / 100), 0)} req per CPU-s); ` +
        `wrk 1 thread × ${CONNECTIONS} connections, ${durationS} s, ${LISTENERS} listener URLs, ${SEGMENT_BYTES} B segments`,
    });
  }
  rows.push({
    name: 'listener load: p99 segment latency',
    figure: results['jitcast segments']!.p99Ms,
    unit: 'ms',
    target: '< 100',
    notes: `at saturation with ${CONNECTIONS} connections (segments only); the usage actor saw ${fmt(results.usage!.rps, 0)} listeners present afterwards (of ${LISTENERS} listener IDs)`,
  });
  return { name: 'listener-load', seconds: (performance.now() - t0) / 1000, details: results, rows };
}

if (process.argv[2] === '--serve') {
  serve(process.argv[3]!, process.argv[4] ?? '0').catch((err) => {
    process.stderr.write(`listener-load node failed: ${(err as Error).stack}\n`);
    process.exit(1);
  });
}
