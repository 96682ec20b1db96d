/**
 * Listener workers (config `listenerWorkers`, runtime/listener-workers.ts): a real embedded node
 * (gateway, attendee access, monitoring) with one worker process on the gateway's port. Every
 * request goes on a fresh connection, so the kernel hands some to the worker and some to the node.
 * Port 18097.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { signAuthCode } from '../../codecs/token.ts';
import { EVENTS } from '../../runtime/contracts.ts';
import type { ListenerWorkers } from '../../runtime/listener-workers.ts';
import { startNode, type RunningNode } from '../../runtime/node.ts';
import { testConfig } from '../support/config.ts';
import { waitFor } from '../support/wait.ts';

const PORT = 18097;
const EVENT = '12345674';
const STREAM = `${EVENT}-spec-node-10002-lq0abc`;
const SEGMENTS = Array.from({ length: 4 }, (_, i) => Buffer.alloc(3000 + i, 0x47 + i));

/** One request on a connection of its own (no keep-alive): the kernel picks the accepting process. */
function get(path: string, method = 'GET'): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: PORT, path, method, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
    });
    req.on('error', reject);
    req.end();
  });
}

function workersOf(node: RunningNode): ListenerWorkers {
  const w = (node.broker.getLocalService('gateway') as unknown as { workers?: ListenerWorkers }).workers;
  assert.ok(w, 'the gateway runs listener workers');
  return w;
}

async function servedByWorkers(): Promise<number> {
  const text = (await get('/metrics')).body.toString();
  return [...text.matchAll(/^jitcast_listener_worker_requests_total\{pid="\d+"\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
}

describe('gateway listener workers (a second process on the gateway port)', { timeout: 60_000 }, () => {
  let node: RunningNode;
  let timer: NodeJS.Timeout;
  const config = testConfig({ httpPort: String(PORT), roles: 'gateway,attendee-access,monitoring', listenerWorkers: '1', healthTestIntervalS: '0' });
  const code = signAuthCode(config.secret, EVENT, STREAM, Math.floor(Date.now() / 1000) + 3600);
  const seg = (i: number, l = 'spec-listener') => `/s/${STREAM}/seg${String(i).padStart(5, '0')}.ts?a=${code}&l=${l}`;

  before(async () => {
    const dir = join(config.dataDir, 'live', STREAM);
    mkdirSync(dir, { recursive: true });
    const lines = ['#EXTM3U', '#EXT-X-VERSION:3', '#EXT-X-TARGETDURATION:2', '#EXT-X-MEDIA-SEQUENCE:0'];
    SEGMENTS.forEach((b, i) => {
      lines.push('#EXTINF:2.000,', `seg0000${i}.ts`);
      writeFileSync(join(dir, `seg0000${i}.ts`), b);
    });
    writeFileSync(join(dir, 'index.m3u8'), lines.join('\n') + '\n');
    node = await startNode(config);
    const push = () =>
      node.broker.broadcast(EVENTS.streamDataset, {
        streamId: STREAM, eventId: EVENT, format: 'hls', port: 10002, nodeId: config.nodeId, dataCenter: config.dataCenter, url: `/s/${STREAM}/index.m3u8`,
        startedAt: new Date(Date.now() - 60_000).toISOString(), lastSeenAt: new Date().toISOString(),
      });
    await push();
    timer = setInterval(() => void push(), 500);
  });

  after(async () => {
    clearInterval(timer);
    await node?.stop();
  });

  it('segments on fresh connections all answer their exact bytes, and the worker answers some itself (counted in /metrics)', async () => {
    assert.equal((await get(`/s/${STREAM}/index.m3u8?a=${code}&l=spec-listener`)).status, 200, 'the playlist first, as a player does');
    for (let round = 0; round < 150; round++) {
      const i = round % SEGMENTS.length;
      const r = await get(seg(i));
      assert.equal(r.status, 200);
      assert.ok(r.body.equals(SEGMENTS[i]!), `segment ${i} bytes (round ${round})`);
    }
    const served = await waitFor('the worker reported segments it answered', async () => ((await servedByWorkers()) > 0 ? servedByWorkers() : undefined), 5_000);
    assert.ok(served > 0 && served <= 150, `${served} of 150 answered by the worker`);
  });

  it('playlists on fresh connections are each rewritten for their listener, by whichever process answers, and the same', async () => {
    await new Promise((r) => setTimeout(r, 1200)); // the worker's report of the segments above (once a second) is in
    const before = await servedByWorkers();
    const bodies = new Set<string>();
    for (let i = 0; i < 60; i++) {
      const l = `listener-${i}`;
      const r = await get(`/s/${STREAM}/index.m3u8?a=${code}&l=${l}`);
      assert.equal(r.status, 200);
      const text = r.body.toString();
      assert.match(text, new RegExp(`^seg00003\\.ts\\?a=${code.replace(/[.]/g, '\\.')}&l=${l}$`, 'm'));
      assert.doesNotMatch(text, /ENDLIST/);
      bodies.add(text.replaceAll(`&l=${l}`, '&l=*'));
    }
    assert.equal(bodies.size, 1, 'one playlist, whoever answered');
    await waitFor('the worker answered some of the playlists', async () => ((await servedByWorkers()) > before ? true : undefined), 5_000);
  });

  it('everything else on a worker connection is the gateway answering: pages, the API, refusals', async () => {
    for (let i = 0; i < 20; i++) {
      assert.equal((await get('/api/openapi.json')).status, 200);
      assert.equal((await get('/api/events', 'POST')).status, 401, 'the API still needs a key');
      assert.equal((await get(`/s/${STREAM}/seg00000.ts?a=1.forged`)).status, 403, 'a forged code is refused');
      assert.equal((await get(`/s/${STREAM}/seg00009.ts?a=${code}`)).status, 404, 'a segment that does not exist');
    }
  });

  it('a worker that dies is restarted, and the port answers meanwhile', async () => {
    const workers = workersOf(node);
    const [pid] = workers.pids;
    assert.ok(pid);
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 20; i++) assert.equal((await get(seg(i % SEGMENTS.length))).status, 200);
    const again = await waitFor('a new worker', async () => (workers.pids.length === 1 && workers.pids[0] !== pid ? workers.pids[0] : undefined), 10_000);
    assert.notEqual(again, pid);
  });

  it('stopping the node ends its workers and removes their socket', async () => {
    const workers = workersOf(node);
    const pids = workers.pids;
    const socket = (node.broker.getLocalService('gateway') as unknown as { innerSocket?: string }).innerSocket;
    assert.ok(socket && existsSync(socket));
    clearInterval(timer);
    await node.stop();
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), 'the worker is gone');
    assert.equal(existsSync(socket), false);
  });
});
