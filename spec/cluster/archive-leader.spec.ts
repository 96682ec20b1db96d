/**
 * The elected archive leader (issue 4, item 3): three processes, each with an `archive-coordinator`,
 * silence limit 3 s, all on this machine (one IP address, so node IDs decide: arc-a < arc-b < arc-c).
 * - arc-a: archive coordinator plus the voice server and encoder of the call: the leader, killed.
 * - arc-b: the event plane (gateway, reservation, event, monitoring, content storage, attendee access)
 *   and a coordinator. The only content storage of the cluster: replication between storage centers
 *   is other work in progress.
 * - arc-c: a coordinator alone.
 * Every coordinator names arc-a. A call goes live on arc-a and hangs up, the event is ended, and its
 * archive job (BullMQ, job ID from the event ID) is taken by arc-a's worker, which holds it
 * (`JITCAST_TEST_ARCHIVE_HOLD_MS`, a test-only hook of runtime/archive-queue.ts, set on arc-a alone)
 * so that arc-a can be SIGKILLed mid-job. arc-b must lead within the silence limit + 1 s, take the
 * stalled job and build the archive, exactly once: one "archive built" line for the event across the
 * survivors, and one <archive> in event-info.xml.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureServices, logLines, placeCall, sippPorts, sleep, startCluster, streamsOf, waitForLog, waitUntil, type Cluster, type PlacedCall } from '../support/cluster.ts';

const SLOT = 1;
const SILENCE_LIMIT_S = 3;
const HOLD_MS = 60_000;
const PLANE_ROLES = ['gateway', 'reservation', 'event', 'monitoring', 'content-storage', 'attendee-access', 'archive-coordinator'];

/** Every event-info.xml under a node's storage directory for `eventId`. */
function eventInfoFiles(dataDir: string, eventId: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(dir, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (n === 'event-info.xml' && dir.endsWith(eventId)) out.push(p);
    }
  };
  walk(join(dataDir, 'storage'));
  return out;
}

describe('archive leader: election by address then node ID, and SIGKILL of the leader mid-job', { timeout: 240_000 }, () => {
  let cluster: Cluster;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-cluster-archive-leader-'));
  const sipp = sippPorts(SLOT);
  let call: PlacedCall | undefined;

  before(async () => {
    await ensureServices();
    cluster = await startCluster({
      name: 'archive-leader',
      slot: SLOT,
      nodes: [
        { id: 'arc-a', roles: ['archive-coordinator', 'voice-server', 'encoder-port'], env: { JITCAST_TEST_ARCHIVE_HOLD_MS: String(HOLD_MS) } },
        { id: 'arc-b', roles: PLANE_ROLES },
        { id: 'arc-c', roles: ['archive-coordinator'] },
      ],
      gateway: 'arc-b',
      env: { JITCAST_ARCHIVE_SILENCE_LIMIT_S: String(SILENCE_LIMIT_S) },
    });
  });
  after(async () => {
    await call?.done;
    await cluster?.stop();
  });

  test('every coordinator names the same leader: the first by address, then node ID (arc-a)', async () => {
    const st = await waitUntil('three coordinators agreeing on a leader', async () => {
      const s = await cluster.status();
      const views = s.archiveCoordinators ?? [];
      // ... and the leader acting on it (a coordinator listens for three heartbeats before it leads).
      return views.length === 3 && views.every((v: any) => v.peers?.length === 3 && v.leader === views[0].leader) && views.some((v: any) => v.worker) ? s : undefined;
    }, 20_000, 250);
    assert.equal(st.archiveLeader, 'arc-a');
    for (const v of st.archiveCoordinators) {
      assert.equal(v.leader, 'arc-a', `${v.nodeId} names ${v.leader}`);
      assert.deepEqual(v.peers.map((p: any) => p.nodeId), ['arc-a', 'arc-b', 'arc-c']);
      assert.equal(v.silenceLimitS, SILENCE_LIMIT_S);
      assert.equal(v.mode, 'queue');
      assert.equal(v.worker, v.nodeId === 'arc-a', `only the leader runs the worker (${v.nodeId})`);
    }
    assert.equal(new Set(st.archiveCoordinators.map((v: any) => v.address)).size, 1, 'one machine: one address, the node ID breaks the tie');
  });

  test('SIGKILL of the leader holding a pending archive: a new leader within the limit + 1 s builds it exactly once', async () => {
    const ev = (await cluster.api('POST', '/api/events', { title: 'archive leader' })).body as { eventId: string; pin: string };
    call = placeCall({ dir: work, name: 'arc-call', target: cluster.node('arc-a').sipTarget, event: ev, holdMs: 12_000, localPort: sipp.sip(0), mediaPort: sipp.media(0), timeoutS: 40 });
    await waitForLog(cluster.node('arc-a'), new RegExp(`caller live \\[event:${ev.eventId}`), call.startedAt, 20_000);
    await waitUntil('the call stream', async () => (streamsOf(await cluster.status(), ev.eventId).length > 0 ? true : undefined), 15_000, 200);
    const res = await call.done;
    assert.equal(res.code, 0, `sipp: ${res.stderr?.slice(-400)}`);
    const end = await cluster.api('POST', `/api/events/${ev.eventId}/end`);
    assert.equal(end.status, 200, end.text);

    // The leader takes the job and holds it; kill it mid-job.
    const taken = await waitForLog(cluster.node('arc-a'), new RegExp(`archive job taken \\[event:${ev.eventId} `), call.startedAt, 40_000);
    assert.match((await cluster.api('GET', `/api/events/${ev.eventId}`)).body.status, /^archiving$/);
    const killedAt = await cluster.kill9('arc-a');
    assert.ok(killedAt >= taken.at);

    const elected = await waitForLog(cluster.node('arc-b'), /archive leader is now arc-b \[was:arc-a /, killedAt, (SILENCE_LIMIT_S + 5) * 1000);
    const electedMs = elected.at - killedAt;
    const seenByC = await waitForLog(cluster.node('arc-c'), /archive leader is now arc-b \[was:arc-a /, killedAt, 10_000);
    console.log(`# new leader arc-b ${electedMs} ms after the SIGKILL (arc-c agrees after ${seenByC.at - killedAt} ms; limit ${SILENCE_LIMIT_S} s)`);
    assert.ok(electedMs <= (SILENCE_LIMIT_S + 1) * 1000, `arc-b elected ${electedMs} ms after the kill`);

    const built = await waitForLog(cluster.node('arc-b'), new RegExp(`archive built \\[event:${ev.eventId} `), killedAt, 30_000);
    const retaken = logLines(cluster.node('arc-b'), new RegExp(`archive job taken \\[event:${ev.eventId} `), killedAt);
    console.log(`# stalled job taken by arc-b ${retaken[0] ? retaken[0].at - killedAt : '?'} ms, archive built ${built.at - killedAt} ms after the SIGKILL`);
    const event = await waitUntil('the event archived', async () => {
      const e = await cluster.api('GET', `/api/events/${ev.eventId}`);
      return e.body?.status === 'archived' ? e.body : undefined;
    }, 15_000, 200);
    assert.ok(Array.isArray(event.archive) && event.archive.length > 0);

    // Give a second build (a duplicate job, a second leader) time to show up, then count.
    await sleep(5000);
    const builtLines = ['arc-b', 'arc-c'].flatMap((id) => logLines(cluster.node(id), new RegExp(`archive built \\[event:${ev.eventId} `)));
    assert.equal(builtLines.length, 1, builtLines.map((l) => l.line).join('\n'));
    assert.equal(logLines(cluster.node('arc-a'), new RegExp(`archive built \\[event:${ev.eventId} `)).length, 0, 'the killed leader never finished');
    assert.equal(logLines(cluster.node('arc-c'), /archive worker started/, killedAt).length, 0, 'arc-c did not lead after the kill: arc-b did');
    const files = eventInfoFiles(cluster.node('arc-b').dataDir, ev.eventId);
    assert.equal(files.length, 1, files.join(', '));
    const xml = readFileSync(files[0]!, 'utf8');
    assert.equal(xml.match(/<archive[\s>]/g)?.length, 1, xml);
  });
});
