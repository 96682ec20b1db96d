/**
 * Reservations per second through the REST API (issue 5): one node process in cluster mode (NATS,
 * the machine's Redis, and a PostgreSQL of the benchmark's own on port 11604, so stopping it touches
 * nothing else) with the roles a reservation passes through (gateway, reservation, event,
 * content-storage, monitoring). `CLIENTS` clients each send `POST /api/events` (node:http, kept-alive
 * connections) as soon as their previous answer came (closed loop) for `n` reservations: first with PostgreSQL up, then with it
 * stopped. Per phase: reservations per second (all answered 201 / wall time), p50/p99/max latency,
 * errors. After the down phase PostgreSQL starts again and the benchmark times how long until every
 * reservation of both phases has its row (the BullMQ queue draining plus nothing lost).
 *
 * Target: 1,000 /s with p99 under 50 ms, unchanged when PostgreSQL is down. HTTP port 14070
 * (the benchmark block 14000-15999); traffic stays on 127.0.0.1.
 */
import http from 'node:http';
import { cpuPercent, sampleTree } from './support/proc.ts';
import { fmt, median, type BenchOptions, type BenchResult, type Row } from './support/report.ts';
import { CLUSTER_API_KEY, startCluster, type Cluster } from '../spec/support/cluster.ts';
import { startPostgresInstance, type PostgresInstance } from '../spec/support/postgres-instance.ts';

const TARGET_RATE = 1000;
const TARGET_P99_MS = 50;
const CLIENTS = 16;
const PG_PORT = 11604;
const PORTS = { httpPort: 14070, sipPort: 14071, rtpPorts: '14000-14049', encoderPorts: '14100-14149' };

/** One phase's outcome. */
export interface ReservationPhase {
  phase: 'postgres-up' | 'postgres-down';
  n: number;
  ok: number;
  errors: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  firstError?: string;
  /** CPU of the node's process tree during the phase, % of one core (its threadpool included). */
  serverCpuPct: number;
  /** CPU of this load generator during the phase, % of one core. */
  clientCpuPct: number;
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}

/** One `POST /api/events` on a kept-alive connection: status and body. */
function post(agent: http.Agent, url: URL, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: { Authorization: `Bearer ${CLUSTER_API_KEY}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function phase(name: ReservationPhase['phase'], baseUrl: string, n: number, ids: string[], serverPid: number): Promise<ReservationPhase> {
  const lat: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;
  // node:http on kept-alive connections, not fetch(): undici's fetch cost the generator most of a core
  // on this 2-core machine, CPU the server under test then did not have.
  const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
  const url = new URL('/api/events', baseUrl);
  const server0 = sampleTree(serverPid);
  const self0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < n) {
        const i = next++;
        const s = performance.now();
        try {
          const res = await post(agent, url, JSON.stringify({ title: `bench ${name} ${i}` }));
          if (res.status !== 201) throw new Error(`HTTP ${res.status} ${res.text.slice(0, 200)}`);
          ids.push((JSON.parse(res.text) as { eventId: string }).eventId);
          lat.push(performance.now() - s);
        } catch (err) {
          errors++;
          firstError ??= (err as Error).message;
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const self = process.cpuUsage(self0);
  const serverCpuPct = cpuPercent(server0, sampleTree(serverPid));
  agent.destroy();
  return {
    phase: name, n, ok: lat.length, errors, seconds, perSecond: lat.length / seconds, p50Ms: median(lat), p99Ms: quantile(lat, 0.99), maxMs: Math.max(...lat), firstError,
    serverCpuPct, clientCpuPct: ((self.user + self.system) / 1e6 / seconds) * 100,
  };
}

/** The reservations benchmark. */
export async function reservations(o: BenchOptions): Promise<BenchResult> {
  const t0 = performance.now();
  const n = o.quick ? 1000 : 5000;
  let pg: PostgresInstance | undefined;
  let cluster: Cluster | undefined;
  const phases: ReservationPhase[] = [];
  let landedMs = NaN;
  let rows = NaN;
  const ids: string[] = [];
  try {
    pg = await startPostgresInstance(PG_PORT);
    cluster = await startCluster({
      name: 'bench-reservations',
      postgres: false,
      env: { JITCAST_DB_URL: pg.url, JITCAST_LOG_LEVEL: 'warn' },
      nodes: [{ id: 'res-a', roles: ['gateway', 'reservation', 'event', 'content-storage', 'monitoring'], ...PORTS }],
      log: o.log,
    });
    const baseUrl = cluster.node('res-a').baseUrl;
    const pid = cluster.node('res-a').pid;
    // Warm-up: a running service is warm; 200 requests left the first phase measuring V8's tiering (about a third slower).
    await phase('postgres-up', baseUrl, 2000, [], pid);
    phases.push(await phase('postgres-up', baseUrl, n, ids, pid));
    o.log(`reservations: PostgreSQL up ${fmt(phases[0]!.perSecond, 0)} /s p99 ${fmt(phases[0]!.p99Ms, 1)} ms`);
    await pg.stop();
    phases.push(await phase('postgres-down', baseUrl, n, ids, pid));
    o.log(`reservations: PostgreSQL down ${fmt(phases[1]!.perSecond, 0)} /s p99 ${fmt(phases[1]!.p99Ms, 1)} ms`);
    const back = performance.now();
    await pg.start();
    const want = new Set(ids);
    const until = performance.now() + 120_000;
    for (;;) {
      const got = await pg.query<{ event_id: string }>('SELECT event_id FROM events');
      rows = got.filter((r) => want.has(r.event_id)).length;
      if (rows === want.size) {
        landedMs = performance.now() - back;
        break;
      }
      if (performance.now() > until) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    o.log(`reservations: ${rows}/${want.size} rows ${Number.isFinite(landedMs) ? `${fmt(landedMs / 1000, 1)} s after PostgreSQL came back` : 'NOT all landed in 120 s'}`);
  } finally {
    await cluster?.stop();
    await pg?.destroy();
  }
  const target = `≥ ${TARGET_RATE} /s, p99 < ${TARGET_P99_MS} ms`;
  const out: Row[] = phases.map((p) => ({
    name: `reservations (${p.phase === 'postgres-up' ? 'PostgreSQL up' : 'PostgreSQL down'})`,
    figure: Math.round(p.perSecond),
    unit: '/s',
    target,
    notes: `${p.ok}/${p.n} answered 201 with ${CLIENTS} clients in ${fmt(p.seconds, 1)} s; p50 ${fmt(p.p50Ms, 1)} ms, p99 ${fmt(p.p99Ms, 1)} ms, max ${fmt(p.maxMs, 0)} ms; CPU: node ${fmt(p.serverCpuPct, 0)} %, load generator ${fmt(p.clientCpuPct, 0)} % of a core${p.errors ? `; ${p.errors} errors, first: ${p.firstError}` : ''}`,
  }));
  out.push({
    name: 'reservations: rows landed after PostgreSQL returned',
    figure: Number.isFinite(landedMs) ? landedMs / 1000 : 'n/a',
    unit: 's',
    target: 'every row',
    notes: `${rows}/${ids.length} reservations of both phases have their row in PostgreSQL (BullMQ queue drained)`,
  });
  return { name: 'reservations', rows: out, details: { phases, landedMs, rows, reservations: ids.length, clients: CLIENTS }, seconds: (performance.now() - t0) / 1000 };
}
