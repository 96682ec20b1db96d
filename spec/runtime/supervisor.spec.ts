import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { ChildProcessHandle, LineTail, ProcessSupervisor, type ProcessExit } from '../../runtime/supervisor.ts';
import { ProcessStartError } from '../../runtime/errors.ts';

const node = process.execPath;
/** A child that prints "ready" and then lives until signalled. */
const longRunner = { command: node, args: ['-e', 'console.error("ready"); setInterval(() => {}, 1000)'], readyLine: /^ready$/ };

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('LineTail', () => {
  it('push() keeps only the last lines, splitting on \\n and \\r', () => {
    const t = new LineTail(3);
    t.push('a\nb\rc\r\nd\ne');
    assert.deepEqual(t.lines, ['b', 'c', 'd']);
    assert.deepEqual(t.snapshot(), ['c', 'd', 'e']);
  });
});

describe('ChildProcessHandle', () => {
  it('start() rejects with ProcessStartError for a missing binary', async () => {
    await assert.rejects(ChildProcessHandle.start({ command: '/nonexistent/jitcast-binary' }), (err: unknown) => {
      assert.ok(err instanceof ProcessStartError);
      assert.match((err as Error).message, /ENOENT/);
      return true;
    });
  });

  it('start() rejects with ProcessStartError carrying the exit code when /bin/false exits before ready', async () => {
    await assert.rejects(ChildProcessHandle.start({ command: '/bin/false' }), (err: unknown) => {
      assert.ok(err instanceof ProcessStartError);
      assert.equal((err as ProcessStartError).data.code, 1);
      return true;
    });
  });

  it('start() rejection carries the stderr tail of a child that failed before its ready line', async () => {
    const p = ChildProcessHandle.start({ command: node, args: ['-e', 'for (let i = 0; i < 30; i++) console.error("line " + i); process.exit(3)'], readyLine: /^ready$/ });
    await assert.rejects(p, (err: unknown) => {
      const data = (err as ProcessStartError).data as ProcessExit;
      assert.equal(data.code, 3);
      assert.equal(data.stderrTail.length, 20);
      assert.equal(data.stderrTail.at(-1), 'line 29');
      return true;
    });
  });

  it('emits died with code and stderr tail when the child exits after it was ready', async () => {
    const h = await ChildProcessHandle.start({ command: node, args: ['-e', 'console.error("ready"); setTimeout(() => { console.error("boom"); process.exit(7) }, 100)'], readyLine: /^ready$/ });
    const [exit] = (await once(h, 'died')) as [ProcessExit];
    assert.equal(exit.code, 7);
    assert.deepEqual(exit.stderrTail, ['ready', 'boom']);
  });

  it('close() ends a running child with SIGINT, emits no died and is idempotent', async () => {
    const h = await ChildProcessHandle.start(longRunner);
    let died = false;
    h.on('died', () => (died = true));
    const [a, b] = await Promise.all([h.close(), h.close()]);
    assert.equal(a, b);
    assert.equal(a.signal, 'SIGINT');
    assert.equal(died, false);
    assert.equal(alive(h.pid), false);
  });

  it('close() falls back to SIGKILL for a child that ignores SIGINT', async () => {
    const h = await ChildProcessHandle.start({
      command: node,
      args: ['-e', 'process.on("SIGINT", () => {}); console.error("ready"); setInterval(() => {}, 1000)'],
      readyLine: /^ready$/,
      killGraceMs: 200,
    });
    const exit = await h.close();
    assert.equal(exit.signal, 'SIGKILL');
  });
});

describe('ProcessSupervisor', () => {
  it('start() rejects with ProcessStartError when the first instance fails to start', async () => {
    const sup = new ProcessSupervisor({ start: () => ChildProcessHandle.start({ command: '/bin/false' }) });
    await assert.rejects(sup.start(), ProcessStartError);
    assert.equal(sup.current, undefined);
  });

  it('start() wraps a non-ProcessStartError failure of the start function in ProcessStartError', async () => {
    const sup = new ProcessSupervisor<ChildProcessHandle>({ start: async () => { throw new Error('disk full'); } });
    await assert.rejects(sup.start(), (err: unknown) => err instanceof ProcessStartError && /disk full/.test((err as Error).message));
  });

  it('restarts a dying child with doubling back-off and gives up after maxRestarts', async () => {
    const starts: number[] = [];
    const sup = new ProcessSupervisor({
      start: (attempt) => {
        starts.push(attempt);
        return ChildProcessHandle.start({ command: node, args: ['-e', 'console.error("ready"); setTimeout(() => process.exit(2), 20)'], readyLine: /^ready$/ });
      },
      initialDelayMs: 20,
      maxDelayMs: 60,
      maxRestarts: 3,
    });
    const died: ProcessExit[] = [];
    const restarted: number[] = [];
    sup.on('died', (exit) => died.push(exit));
    sup.on('restarted', (_i, attempt) => restarted.push(attempt));
    await sup.start();
    const [gaveUpAfter] = await once(sup, 'gaveUp');
    assert.equal(gaveUpAfter, 3);
    assert.deepEqual(starts, [0, 1, 2, 3]);
    assert.deepEqual(restarted, [1, 2, 3]);
    assert.equal(died.length, 4);
    assert.ok(died.every((d) => d.code === 2));
    assert.deepEqual([1, 2, 3, 4].map((n) => sup.delayFor(n)), [20, 40, 60, 60]);
    await sup.close();
  });

  it('retries a restart that fails to start and emits restartFailed', async () => {
    let n = 0;
    const sup = new ProcessSupervisor({
      start: () =>
        n++ === 0
          ? ChildProcessHandle.start({ command: node, args: ['-e', 'console.error("ready"); setTimeout(() => process.exit(1), 20)'], readyLine: /^ready$/ })
          : n === 2
            ? ChildProcessHandle.start({ command: '/bin/false' })
            : ChildProcessHandle.start(longRunner),
      initialDelayMs: 10,
    });
    const failed: number[] = [];
    sup.on('restartFailed', (err, attempt) => {
      assert.ok(err instanceof ProcessStartError);
      failed.push(attempt);
    });
    await sup.start();
    const [instance, attempt] = await once(sup, 'restarted');
    assert.deepEqual(failed, [1]);
    assert.equal(attempt, 2);
    assert.equal(sup.current, instance);
    await sup.close();
    assert.equal(alive((instance as ChildProcessHandle).pid), false);
  });

  it('close() is idempotent, ends the child and resolves when it is gone', async () => {
    const sup = new ProcessSupervisor({ start: () => ChildProcessHandle.start(longRunner) });
    const child = await sup.start();
    await Promise.all([sup.close(), sup.close()]);
    await sup.close();
    assert.equal(alive(child.pid), false);
    assert.equal(child.exitInfo?.signal, 'SIGINT');
    assert.equal(sup.current, undefined);
    await assert.rejects(sup.start(), ProcessStartError);
  });

  it('close() during the back-off pause prevents any restart', async () => {
    let starts = 0;
    const sup = new ProcessSupervisor({
      start: () => {
        starts++;
        return ChildProcessHandle.start({ command: node, args: ['-e', 'console.error("ready"); setTimeout(() => process.exit(1), 20)'], readyLine: /^ready$/ });
      },
      initialDelayMs: 100,
    });
    let restarted = false;
    sup.on('restarted', () => (restarted = true));
    await sup.start();
    await once(sup, 'died');
    await sup.close();
    // Wait past the pause the restart would have taken.
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(starts, 1);
    assert.equal(restarted, false);
  });

  it('close() during a start in flight closes the instance that start produces', async () => {
    const sup = new ProcessSupervisor({ start: () => ChildProcessHandle.start(longRunner) });
    const started = sup.start();
    const closed = sup.close();
    await assert.rejects(started, ProcessStartError);
    await closed;
    assert.equal(sup.current, undefined);
  });
});
