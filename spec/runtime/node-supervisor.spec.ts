import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterWorkerEnd, EX_CONFIG, EX_USAGE, NodeSupervisor, supervisionOf, type WorkerEnd } from '../../runtime/node-supervisor.ts';

const FAKE = fileURLToPath(new URL('../fixtures/fake-node-worker.mjs', import.meta.url));
const REPO = fileURLToPath(new URL('../..', import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('supervisionOf', () => {
  const cases: Array<[string, string[], NodeJS.ProcessEnv, boolean]> = [
    ['start', ['start'], {}, true],
    ['node with flags after it', ['node', '--roles', 'gateway,event', '--nats-url', 'nats://x:4222'], {}, true],
    ['node after its flags', ['--roles', 'all', 'node'], {}, true],
    ['a client command', ['status', '--json'], {}, false],
    ['no command', [], {}, false],
    ['--supervise false', ['start', '--supervise', 'false'], {}, false],
    ['--supervise=0', ['node', '--supervise=0', '--roles', 'all'], {}, false],
    ['JITCAST_SUPERVISE=0', ['start'], { JITCAST_SUPERVISE: '0' }, false],
    ['JITCAST_SUPERVISE=1 over --supervise false (the environment wins)', ['start', '--supervise', 'false'], { JITCAST_SUPERVISE: '1' }, true],
    ['--help', ['start', '--help'], {}, false],
    ['-h', ['node', '-h'], {}, false],
    ['a worker', ['start'], { JITCAST_WORKER: '1' }, false],
    ['a flag value that looks like a command', ['status', '--url', 'start'], {}, false],
  ];
  for (const [name, argv, env, supervise] of cases) {
    it(`supervisionOf() ${supervise ? 'supervises' : 'does not supervise'}: ${name}`, () => {
      const s = supervisionOf(argv, env);
      assert.equal(s.supervise, supervise);
      assert.equal(s.error, undefined);
    });
  }

  it('supervisionOf() finds the command behind valued flags and a boolean --json', () => {
    assert.equal(supervisionOf(['--json', '--http-port', '8081', 'node'], {}).command, 'node');
  });

  it('supervisionOf() refuses a --supervise value that is neither true nor false, naming the key', () => {
    const s = supervisionOf(['start', '--supervise', 'maybe'], {});
    assert.equal(s.supervise, false);
    assert.match(s.error ?? '', /'supervise' must be true or false, got 'maybe'/);
  });

  it('supervisionOf() takes the node ID from JITCAST_NODE_ID over --node-id, as the config does', () => {
    assert.equal(supervisionOf(['node', '--node-id', 'n1'], {}).nodeId, 'n1');
    assert.equal(supervisionOf(['node', '--node-id=n1'], { JITCAST_NODE_ID: 'n2' }).nodeId, 'n2');
    assert.equal(supervisionOf(['start'], {}).nodeId, undefined);
  });
});

describe('afterWorkerEnd', () => {
  const died = (o: Partial<WorkerEnd>): WorkerEnd => ({ code: 1, signal: null, upMs: 5000, asked: false, ...o });

  it('afterWorkerEnd() restarts a worker killed by SIGKILL after 1 s (attempt 1)', () => {
    assert.deepEqual(afterWorkerEnd(died({ code: null, signal: 'SIGKILL' }), 0), { action: 'restart', attempt: 1, delayMs: 1000 });
  });

  it('afterWorkerEnd() backs off 8 s for the 4th death in a row', () => {
    assert.deepEqual(afterWorkerEnd(died({ upMs: 2000 }), 3), { action: 'restart', attempt: 4, delayMs: 8000 });
  });

  it('afterWorkerEnd() restarts after 1 s again once the worker had been up 60 s', () => {
    assert.deepEqual(afterWorkerEnd(died({ upMs: 60_000 }), 6), { action: 'restart', attempt: 1, delayMs: 1000 });
  });

  it('afterWorkerEnd() restarts a worker that exits 1 before it was ever ready (a port in use), backing off', () => {
    assert.deepEqual(afterWorkerEnd(died({ upMs: undefined }), 2), { action: 'restart', attempt: 3, delayMs: 4000 });
  });

  it('afterWorkerEnd() exits with 78 for a configuration error before ready, without restart', () => {
    assert.deepEqual(afterWorkerEnd(died({ code: EX_CONFIG, upMs: undefined }), 0), { action: 'exit', code: 78, why: 'config' });
  });

  it('afterWorkerEnd() exits with 64 for a command-line error before ready, without restart', () => {
    assert.deepEqual(afterWorkerEnd(died({ code: EX_USAGE, upMs: undefined }), 0), { action: 'exit', code: 64, why: 'config' });
  });

  it('afterWorkerEnd() restarts a worker that exits 78 after it was ready (not a start-up config error)', () => {
    assert.equal(afterWorkerEnd(died({ code: EX_CONFIG, upMs: 10 }), 0).action, 'restart');
  });

  it('afterWorkerEnd() exits 0 when asked, whether the worker exited 0 or died of the stop signal itself', () => {
    assert.deepEqual(afterWorkerEnd(died({ asked: true, code: 0 }), 2), { action: 'exit', code: 0, why: 'stopped' });
    assert.deepEqual(afterWorkerEnd(died({ asked: true, code: null, signal: 'SIGINT', upMs: undefined }), 0), { action: 'exit', code: 0, why: 'stopped' });
    assert.deepEqual(afterWorkerEnd(died({ asked: true, code: null, signal: 'SIGTERM' }), 0), { action: 'exit', code: 0, why: 'stopped' });
  });

  it('afterWorkerEnd() never restarts while stopping, and passes on an unclean stop', () => {
    assert.deepEqual(afterWorkerEnd(died({ asked: true, code: 1 }), 0), { action: 'exit', code: 1, why: 'stopped' });
    assert.deepEqual(afterWorkerEnd(died({ asked: true, code: null, signal: 'SIGKILL' }), 0), { action: 'exit', code: 1, why: 'stopped' });
  });
});

describe('NodeSupervisor', () => {
  const policy = { initialDelayMs: 100, maxDelayMs: 400, stableMs: 60_000 };
  const started: NodeSupervisor[] = [];
  // A failed assertion must not leave a fake worker running.
  afterEach(async () => {
    await Promise.all(started.splice(0).map((s) => s.stop('SIGKILL')));
  });
  function supervise(plan: string) {
    const dir = mkdtempSync(join(tmpdir(), 'jitcast-node-sup-'));
    const lines: string[] = [];
    const sup = new NodeSupervisor({
      script: FAKE,
      argv: ['start'],
      env: { ...process.env, FAKE_DIR: dir, FAKE_PLAN: plan },
      execArgv: [],
      nodeId: 'spec-node',
      policy,
      stopGraceMs: 2000,
      log: (level, line) => lines.push(`${level} ${line}`),
    });
    started.push(sup);
    const runsFile = join(dir, 'runs');
    const runs = () => (existsSync(runsFile) ? readFileSync(runsFile, 'utf8').trim().split('\n').map(Number) : []);
    const until = async (what: string, ok: () => boolean, ms = 10_000) => {
      const end = Date.now() + ms;
      while (!ok()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}:\n${lines.join('\n')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    return { sup, lines, runs, until };
  }

  it('restarts a worker that dies after ready with back-off 100, 200 ms, logs each death and return, then stops it with 0', async () => {
    const { sup, lines, runs, until } = supervise('crash,crash,stay');
    sup.start();
    await until('the third worker to be back', () => lines.some((l) => /node worker back .*restarts:2\]/.test(l)));
    assert.match(lines.find((l) => /restart 1 in/.test(l)) ?? '', /^warn node worker died \[node:fake-node pid:\d+ code:1 signal:null up:[\d.]+ s\], restart 1 in 0\.1 s$/);
    assert.ok(lines.some((l) => /node worker died .*, restart 2 in 0\.2 s$/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => /^info node worker started \[node:fake-node pid:\d+ restart:2\]$/.test(l)), lines.join('\n'));
    const last = runs().at(-1)!;
    assert.equal(sup.workerPid, last);
    assert.equal(await sup.stop('SIGINT'), 0);
    assert.equal(alive(last), false);
    assert.equal(runs().length, 3);
    assert.ok(lines.some((l) => /^info node worker stopped \[node:fake-node pid:\d+ code:0 signal:null/.test(l)), lines.join('\n'));
  });

  it('restarts a worker that exits 1 before it was ever ready', async () => {
    const { sup, lines, runs, until } = supervise('fail,fail,stay');
    sup.start();
    await until('the third worker to be back', () => lines.some((l) => /node worker back/.test(l)));
    assert.ok(lines.some((l) => /node worker died \[.* never ready\], restart 2 in 0\.2 s/.test(l)), lines.join('\n'));
    assert.equal(await sup.stop(), 0);
    assert.equal(runs().length, 3);
  });

  it('does not restart a worker that exits 78 before ready: done resolves 78 after one start', async () => {
    const { sup, lines, runs } = supervise('config,stay');
    sup.start();
    assert.equal(await sup.done, EX_CONFIG);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(runs().length, 1);
    assert.match(lines.at(-1)!, /^error node worker failed to start \[node:spec-node pid:\d+ code:78 signal:null never ready\]: configuration error, not restarting$/);
  });

  it('stop() during the back-off ends with 0 and starts nothing more; stop() is idempotent', async () => {
    const { sup, runs, until } = supervise('crash');
    sup.start();
    await until('the first death', () => sup.workerPid === undefined && runs().length === 1);
    const [a, b] = await Promise.all([sup.stop(), sup.stop('SIGTERM')]);
    assert.deepEqual([a, b], [0, 0]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(runs().length, 1);
  });

  it('a worker that stops on its own signal (it said stopping) is not restarted: done resolves 0', async () => {
    const { sup, runs, until } = supervise('stay');
    sup.start();
    await until('the worker to be ready', () => sup.workerPid !== undefined && runs().length === 1);
    await new Promise((r) => setTimeout(r, 200));
    process.kill(sup.workerPid!, 'SIGTERM');
    assert.equal(await sup.done, 0);
    assert.equal(runs().length, 1);
  });
});

describe('node supervisor module', () => {
  it('loads neither Moleculer nor an actor: the supervisor stays small', () => {
    const script = `
      import { createRequire } from 'node:module';
      await import('./runtime/node-supervisor.ts');
      const loaded = Object.keys(createRequire(import.meta.url).cache);
      console.log(JSON.stringify(loaded.filter((f) => /moleculer|actors\\//.test(f))));`;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO, encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out.trim().split('\n').at(-1)!), []);
  });
});
