/**
 * `npm run bench [-- --only NAME[,NAME]] [-- --quick]`: runs the benchmarks of issue 2 against a
 * real node (`node bin/jitcast.js start`) with sipp as the caller, prints one table (benchmark,
 * figure, unit, target, notes) and writes `.bench/results.json`. Benchmarks measure and print;
 * they never assert. All traffic stays on 127.0.0.1, on ports 29000-31999 (the cluster benchmarks
 * of issue 3, failover and call-setup, run three node processes on ports 14000-15999).
 *
 *   --quick          short runs for a smoke check (under ~2 minutes)
 *   --only NAMES     pin-to-live, glass-to-glass, capacity, failover, call-setup, listener-gap, archive-build, leader-failover, replication, reservations, listener-load (comma-separated)
 *   --n LIST         capacity: the N to try, e.g. --n 50,100 (default 25,50,100,200; quick 10)
 *   --no-debian      capacity: skip the comparison run with Debian's ffmpeg
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { archiveBuild } from './archive-build.ts';
import { callSetup } from './call-setup.ts';
import { capacity } from './capacity.ts';
import { failover } from './failover.ts';
import { glassToGlass } from './glass-to-glass.ts';
import { leaderFailover } from './leader-failover.ts';
import { listenerGap } from './listener-gap.ts';
import { listenerLoad } from './listener-load.ts';
import { pinToLive } from './pin-to-live.ts';
import { replication } from './replication.ts';
import { reservations } from './reservations.ts';
import { REPO } from './support/node.ts';
import { table, type BenchOptions, type BenchResult, type Row } from './support/report.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    n: { type: 'string' },
    'no-debian': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});

if (values.help) {
  console.log('usage: npm run bench -- [--quick] [--only pin-to-live,glass-to-glass,capacity,failover,call-setup,listener-gap,archive-build,leader-failover,replication,reservations,listener-load] [--n 25,50] [--no-debian]');
  process.exit(0);
}

const ns = values.n ? values.n.split(',').map((s) => Number(s.trim())).filter((x) => Number.isInteger(x) && x > 0) : undefined;
const BENCHES: Record<string, (o: BenchOptions) => Promise<BenchResult>> = {
  'pin-to-live': pinToLive,
  'glass-to-glass': glassToGlass,
  capacity: (o) => capacity({ ...o, ns, compareDebian: values['no-debian'] ? false : undefined }),
  failover,
  'call-setup': callSetup,
  'listener-gap': listenerGap,
  'listener-load': listenerLoad,
  'archive-build': archiveBuild,
  'leader-failover': leaderFailover,
  replication,
  reservations,
};

const only = values.only?.split(',').map((s) => s.trim()).filter(Boolean);
for (const name of only ?? []) {
  if (!BENCHES[name]) {
    console.error(`unknown benchmark '${name}' (known: ${Object.keys(BENCHES).join(', ')})`);
    process.exit(2);
  }
}
const names = only ?? Object.keys(BENCHES);

const started = new Date();
const t0 = performance.now();
const log = (msg: string) => console.log(`[bench ${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${msg}`);
const version = (cmd: string, args: string[]) => {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString().split('\n')[0]!.trim();
  } catch {
    return 'unavailable';
  }
};
const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model,
  node: process.version,
  sipp: version('sipp', ['-v']).replace(/\s+/g, ' ').slice(0, 80) || version('sipp', ['-v']),
};

const results: BenchResult[] = [];
const interrupted = { flag: false };
process.once('SIGINT', () => {
  interrupted.flag = true;
  log('interrupted: finishing the current benchmark (its node is stopped on the way out)');
});

for (const name of names) {
  if (interrupted.flag) break;
  const dir = mkdtempSync(join(tmpdir(), `jitcast-bench-${name}-`));
  log(`${name}: start${values.quick ? ' (quick)' : ''}`);
  const b0 = performance.now();
  try {
    const r = await BENCHES[name]!({ quick: values.quick!, dir, log });
    results.push(r);
    log(`${name}: done in ${r.seconds.toFixed(0)} s`);
  } catch (err) {
    const message = (err as Error).message;
    log(`${name}: failed: ${message.split('\n').slice(0, 12).join('\n')}`);
    results.push({
      name,
      seconds: (performance.now() - b0) / 1000,
      error: message,
      details: undefined,
      rows: [{ name, figure: 'error', unit: '', target: '-', notes: message.split('\n')[0]!.slice(0, 300) }],
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows: Row[] = results.flatMap((r) => r.rows);
const totalS = (performance.now() - t0) / 1000;
console.log('');
console.log(`jitcast benchmarks — ${started.toISOString()} — ${machine.cpus} × ${machine.cpuModel ?? 'cpu'}, Node ${machine.node}${values.quick ? ' — QUICK run' : ''} — ${totalS.toFixed(0)} s`);
console.log('');
console.log(table(rows));
console.log('');

const outDir = join(REPO, '.bench');
mkdirSync(outDir, { recursive: true });
const file = join(outDir, 'results.json');
writeFileSync(file, JSON.stringify({ startedAt: started.toISOString(), seconds: totalS, quick: values.quick, only: only ?? null, machine, rows, results }, null, 2) + '\n');
console.log(`results written to ${file}`);
