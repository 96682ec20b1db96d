/**
 * CPU and memory of a process tree from /proc (Linux): the jitcast node and the ffmpeg encoders it
 * spawns, or sipp on its own. CPU between two samples counts every process seen in either sample;
 * children that exited in between are caught through the parent's cutime/cstime (the kernel adds a
 * reaped child's time there).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();
const PAGE = (() => {
  try {
    return Number(execFileSync('getconf', ['PAGESIZE']).toString().trim()) || 4096;
  } catch {
    return 4096;
  }
})();

/** One process at one instant. */
export interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
  /** utime + stime, in clock ticks. */
  ticks: number;
  /** cutime + cstime (reaped children), in clock ticks. */
  childTicks: number;
  rssBytes: number;
}

/** Reads /proc/<pid>/stat, or undefined when the process is gone. */
export function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const comm = text.slice(open + 1, close);
  // Fields after the command name, starting with field 3 (state) at index 0 (proc(5)).
  const f = text.slice(close + 2).split(' ');
  return {
    pid,
    ppid: Number(f[1]),
    comm,
    ticks: Number(f[11]) + Number(f[12]),
    childTicks: Number(f[13]) + Number(f[14]),
    rssBytes: Number(f[21]) * PAGE,
  };
}

/** The process and all its descendants (by scanning /proc). */
export function processTree(rootPid: number): ProcStat[] {
  const all = new Map<number, ProcStat>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s) all.set(s.pid, s);
  }
  const root = all.get(rootPid);
  if (!root) return [];
  const kids = new Map<number, ProcStat[]>();
  for (const s of all.values()) {
    const list = kids.get(s.ppid) ?? [];
    list.push(s);
    kids.set(s.ppid, list);
  }
  const out: ProcStat[] = [];
  const queue = [root];
  while (queue.length) {
    const p = queue.shift()!;
    out.push(p);
    queue.push(...(kids.get(p.pid) ?? []));
  }
  return out;
}

/** A sample of a process tree. */
export interface TreeSample {
  at: number;
  rootPid: number;
  procs: Map<number, ProcStat>;
}

export function sampleTree(rootPid: number): TreeSample {
  return { at: performance.now(), rootPid, procs: new Map(processTree(rootPid).map((p) => [p.pid, p])) };
}

/**
 * CPU used between two samples, in % of one core (100 = one core busy). With `only`, just the
 * processes whose command matches (reaped children count as matching when `reaped` is true).
 */
export function cpuPercent(a: TreeSample, b: TreeSample, only?: RegExp, reaped = !only): number {
  let ticks = 0;
  for (const [pid, pb] of b.procs) {
    if (only && !only.test(pb.comm)) continue;
    const pa = a.procs.get(pid);
    ticks += pa ? pb.ticks - pa.ticks : pb.ticks;
  }
  // Children reaped in between: their time moved to the parent's cutime/cstime.
  if (reaped) {
    for (const [pid, pb] of b.procs) {
      const pa = a.procs.get(pid);
      if (pa) ticks += pb.childTicks - pa.childTicks;
    }
  }
  const seconds = (b.at - a.at) / 1000;
  return seconds > 0 ? (ticks / CLK_TCK / seconds) * 100 : 0;
}

/** RSS of the whole tree, and of processes whose command matches `comm`. */
export function rss(s: TreeSample, comm?: RegExp): { bytes: number; count: number } {
  let bytes = 0;
  let count = 0;
  for (const p of s.procs.values()) {
    if (comm && !comm.test(p.comm)) continue;
    bytes += p.rssBytes;
    count++;
  }
  return { bytes, count };
}

/** The binary a process runs (/proc/<pid>/exe), or undefined. */
export function exeOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

/** Whole-machine CPU counters (/proc/stat first line): busy and total jiffies. */
export function systemCpu(): { busy: number; total: number; at: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.reduce((s, x) => s + x, 0);
  return { busy: total - idle, total, at: performance.now() };
}

/** Machine busy % (of all cores) between two systemCpu() readings. */
export function systemBusyPercent(a: ReturnType<typeof systemCpu>, b: ReturnType<typeof systemCpu>): number {
  const dt = b.total - a.total;
  return dt > 0 ? ((b.busy - a.busy) / dt) * 100 : 0;
}

/**
 * Waits until the machine is quiet (busy below `maxBusyPct` % of all cores over 3 s) or `maxWaitS`
 * passed: other work on a shared machine skews every figure. Returns the last busy reading.
 */
export async function waitQuiet(maxBusyPct: number, maxWaitS: number, log?: (msg: string) => void): Promise<{ busyPct: number; waitedS: number; quiet: boolean }> {
  const t0 = performance.now();
  let told = false;
  for (;;) {
    const a = systemCpu();
    await new Promise((r) => setTimeout(r, 3000));
    const busyPct = systemBusyPercent(a, systemCpu());
    const waitedS = (performance.now() - t0) / 1000;
    if (busyPct < maxBusyPct) return { busyPct, waitedS, quiet: true };
    if (waitedS >= maxWaitS) {
      log?.(`machine still ${busyPct.toFixed(0)} % busy after ${waitedS.toFixed(0)} s: measuring anyway (figures will be skewed)`);
      return { busyPct, waitedS, quiet: false };
    }
    if (!told) log?.(`machine ${busyPct.toFixed(0)} % busy with other work: waiting up to ${maxWaitS} s for it to quiet down`);
    told = true;
  }
}

/** Proportional set size (shared pages split among their users) of a process, from smaps_rollup; 0 if unreadable. */
export function pssBytes(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
