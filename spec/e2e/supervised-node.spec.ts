/**
 * A crashed node heals itself (issue 3, item 7): `jitcast start` runs the node as a worker under a
 * supervisor (runtime/node-supervisor.ts). SIGKILL the worker and the supervisor logs the death,
 * starts a new worker, and the node answers again with the event reserved before the crash. SIGINT
 * stops both cleanly; a SIGKILLed supervisor takes its worker with it; a configuration error exits
 * once with 78 instead of looping; `JITCAST_SUPERVISE=0` runs the node in the CLI process.
 *
 * Ports: HTTP 19580, SIP 19560, RTP 19600-19649, encoders 19700-19749 (no other spec uses them).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNodeProcess, waitFor, type NodeUnderTest } from '../support/node-process.ts';

const PORTS = { httpPort: 19580, sipPort: 19560, rtpPorts: '19600-19649', encoderPorts: '19700-19749' };
/** The whole restart, from SIGKILL to the API answering with the old event. */
const RESTART_BOUND_MS = 15_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Worker pids in the order the supervisor started them (from its log lines). */
function workerPids(node: NodeUnderTest): number[] {
  return [...node.output().matchAll(/supervisor: node worker started \[node:\S+ pid:(\d+)/g)].map((m) => Number(m[1]));
}

function count(text: string, re: RegExp): number {
  return text.match(new RegExp(re.source, 'g'))?.length ?? 0;
}

function exitOf(node: NodeUnderTest, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (node.proc.exitCode !== null || node.proc.signalCode !== null) return Promise.resolve({ code: node.proc.exitCode, signal: node.proc.signalCode });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no exit in ${timeoutMs} ms:\n${node.output().slice(-3000)}`)), timeoutMs);
    node.proc.once('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal });
    });
  });
}

describe('supervised node', { timeout: 240_000 }, () => {
  const leftovers: number[] = [];
  let node: NodeUnderTest | undefined;
  after(async () => {
    await node?.stop();
    // Whatever a failed test left running: by pid, never by name.
    for (const pid of leftovers) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });

  test('a SIGKILLed worker is restarted: the banner comes again, the API answers with the event reserved before the crash', async () => {
    node = await startNodeProcess(PORTS);
    const [first] = workerPids(node);
    assert.ok(first, `no "node worker started" line:\n${node.output().slice(-2000)}`);
    leftovers.push(first);
    assert.notEqual(first, node.proc.pid, 'the worker is a child, not the process we started');
    const reserved = await node.api('POST', '/api/events', { title: 'Reserved before the crash' });
    assert.equal(reserved.status, 201, reserved.text);
    const eventId = reserved.body.eventId as string;

    const t0 = Date.now();
    process.kill(first, 'SIGKILL');
    const n = node;
    await waitFor('the supervisor to log the death', async () => (/supervisor: node worker died/.test(n.output()) ? true : undefined), 10_000, 50);
    await waitFor('a second "is up"', async () => (count(n.output(), /is up/) >= 2 ? true : undefined), RESTART_BOUND_MS, 50);
    const bannerMs = Date.now() - t0;
    const again = await waitFor('the API to answer with the event', async () => {
      const r = await n.api('GET', `/api/events/${eventId}`);
      return r.status === 200 ? r : undefined;
    }, RESTART_BOUND_MS, 100);
    const apiMs = Date.now() - t0;
    console.log(`# worker restarted in ${bannerMs} ms (SIGKILL to second banner); API answered with the old event after ${apiMs} ms`);

    assert.equal(again.body.eventId, eventId);
    assert.equal(again.body.title, 'Reserved before the crash');
    assert.ok(apiMs < RESTART_BOUND_MS, `restart took ${apiMs} ms`);
    const out = node.output();
    assert.match(out, new RegExp(`supervisor: node worker died \\[node:e2e-node pid:${first} code:null signal:SIGKILL up:[\\d.]+ s\\], restart 1 in 1 s`));
    const pids = workerPids(node);
    assert.equal(pids.length, 2, out.slice(-3000));
    const second = pids[1]!;
    leftovers.push(second);
    assert.match(out, new RegExp(`supervisor: node worker back \\[node:e2e-node pid:${second} restarts:1\\]`));
    assert.equal(alive(first), false);
    assert.equal(alive(second), true);
    assert.equal(node.proc.exitCode, null, 'the supervisor runs on');
  });

  test('SIGINT to supervisor and worker at once (a Ctrl-C to the process group) stops the worker once, cleanly; the supervisor exits 0', async () => {
    assert.ok(node, 'needs the node of the previous test');
    const worker = workerPids(node).at(-1)!;
    const exited = exitOf(node, 25_000);
    process.kill(worker, 'SIGINT');
    node.proc.kill('SIGINT');
    const { code } = await exited;
    assert.equal(code, 0);
    await waitFor('the worker to be gone', async () => (alive(worker) ? undefined : true), 5000, 50);
    const out = node.output();
    // A second SIGINT must not cut the worker's stop short (it would die of the signal: code:null signal:SIGINT).
    assert.match(out, new RegExp(`supervisor: node worker stopped \\[node:e2e-node pid:${worker} code:0 signal:null`));
    assert.equal(count(out, /stopping node e2e-node/), 1, out.slice(-3000));
    assert.match(out, /ServiceBroker is stopped/);
    assert.doesNotMatch(out.slice(out.lastIndexOf('stopping node')), /node worker started/, 'nothing restarts while stopping');
    await node.stop();
    node = undefined;
  });

  test('a SIGKILLed supervisor leaves no worker: the worker stops on its own (IPC disconnect)', async () => {
    node = await startNodeProcess(PORTS);
    const [worker] = workerPids(node);
    assert.ok(worker);
    leftovers.push(worker);
    const t0 = Date.now();
    const killed = node;
    // node.stop() would wait for an exit that has been (the harness checks exitCode, not signalCode).
    node = undefined;
    killed.proc.kill('SIGKILL');
    await exitOf(killed, 5000);
    await waitFor('the orphaned worker to exit', async () => (alive(worker) ? undefined : true), 20_000, 50);
    console.log(`# worker exited ${Date.now() - t0} ms after its supervisor was SIGKILLed`);
    assert.match(killed.output(), /supervisor gone: stopping node e2e-node/);
  });

  test('JITCAST_SUPERVISE=0 runs the node in the CLI process: no supervisor, no worker', async () => {
    node = await startNodeProcess({ ...PORTS, env: { JITCAST_SUPERVISE: '0' } });
    assert.doesNotMatch(node.output(), /supervisor:/);
    const r = await node.api('GET', '/api/events');
    assert.equal(r.status, 200);
    const exited = exitOf(node, 20_000);
    node.proc.kill('SIGINT');
    assert.equal((await exited).code, 0);
    await node.stop();
    node = undefined;
  });

  test('a configuration error (JITCAST_HTTP_PORT=notaport) exits 78 once, with its message, without a restart loop', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'jitcast-e2e-config-'));
    const t0 = Date.now();
    const proc = spawn(process.execPath, ['bin/jitcast.js', 'start'], {
      env: { ...process.env, JITCAST_DATA_DIR: dataDir, JITCAST_HTTP_PORT: 'notaport' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((resolve, reject) => {
      const t = setTimeout(() => {
        proc.kill('SIGKILL');
        reject(new Error(`still running after 20 s (a restart loop?):\n${out}`));
      }, 20_000);
      proc.once('close', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    console.log(`# configuration error: exit ${code} after ${Date.now() - t0} ms`);
    assert.equal(code, 78, out);
    assert.match(out, /jitcast: 'httpPort' must be a number, got 'notaport'/);
    assert.equal(count(out, /node worker started/), 1, out);
    assert.match(out, /supervisor: node worker failed to start \[.*code:78 .*\]: configuration error, not restarting/);
  });
});
