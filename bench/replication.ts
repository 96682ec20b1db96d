/**
 * Replication between storage centers (issue 4, item 5): two content-storage nodes (dc1, dc2) as
 * two brokers in this process over the machine's real NATS (own namespace), each with its own
 * data directory. Measured:
 *  - event-info lag: `putEventInfo` taken by dc1 → the same bytes on dc2's disk (polled every 2 ms);
 *  - segment lag: one upload as it goes (a ~12 KB segment and the grown playlist, as an encoder
 *    sends every 2 s) committed on dc1 → both on dc2's disk;
 *  - catch-up: dc2 stopped, N events (event-info + a 10-segment stream each) written on dc1,
 *    dc2 started again → dc2 holds all of them.
 * The read fail-over after a SIGKILL needs separate processes: spec/cluster/storage-replication.spec.ts
 * prints it (bounded by runtime/storage-client.ts READ_TIMEOUT_MS for the first read after the kill).
 * No ports; traffic is NATS on 127.0.0.1.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceBroker } from 'moleculer';
import { createContentStorageService } from '../actors/content-storage.service.ts';
import { makeEventId } from '../codecs/ids.ts';
import { createBroker } from '../runtime/broker.ts';
import type { EventInfo } from '../runtime/contracts.ts';
import { NATS_URL, ensureServices } from '../spec/support/cluster.ts';
import { testConfig } from '../spec/support/config.ts';
import { playlist } from '../spec/support/event-plane.ts';
import { fmt, minMedMax, type BenchOptions, type BenchResult } from './support/report.ts';

const TARGET_LAG_MS = 1000;

function info(eventId: string, title: string): EventInfo {
  const now = new Date().toISOString();
  return { eventId, title, format: 'hls', createdAt: now, updatedAt: now, archiveDays: 30, hasPassword: false, attendeeUrl: 'http://x/e/a', hostUrl: 'http://x/e/h', status: 'reserved' };
}

async function until(cond: () => boolean, timeoutMs = 30_000): Promise<number> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > timeoutMs) return NaN;
    await new Promise((r) => setTimeout(r, 2));
  }
  return performance.now() - t0;
}

/** Runs the replication benchmark. */
export async function replication(o: BenchOptions): Promise<BenchResult> {
  const t0 = performance.now();
  await ensureServices();
  const namespace = `bench-repl-${process.pid}-${Date.now().toString(36)}`;
  const brokers: ServiceBroker[] = [];
  const start = async (id: string, center: string, dataDir: string) => {
    mkdirSync(dataDir, { recursive: true });
    const config = testConfig({ nodeId: id, dataCenter: center, namespace, natsUrl: NATS_URL, dataDir, logLevel: 'warn' });
    const broker = createBroker(config);
    broker.createService(createContentStorageService(config, { antiEntropyMs: 0, retentionSweepMs: 0 }));
    await broker.start();
    brokers.push(broker);
    return { broker, config, root: join(dataDir, 'storage', center) };
  };
  const rounds = o.quick ? 10 : 50;
  const catchUpEvents = o.quick ? 20 : 200;
  try {
    const a = await start('bench-s1', 'dc1', join(o.dir, 's1'));
    let b = await start('bench-s2', 'dc2', join(o.dir, 's2'));
    await until(() => a.broker.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === 'content-storage' && s.nodeID === 'bench-s2'));
    await new Promise((r) => setTimeout(r, 500));

    o.log(`replication: event-info lag, ${rounds} writes`);
    const infoLag: number[] = [];
    const eventId = makeEventId('7000001');
    for (let i = 0; i < rounds; i++) {
      const title = `round ${i}`;
      const t = performance.now();
      await a.broker.call('content-storage.putEventInfo', { info: info(eventId, title) }, { nodeID: 'bench-s1' });
      const path = join(b.root, eventId, 'event-info.xml');
      await until(() => existsSync(path) && readFileSync(path, 'utf8').includes(`<title>${title}</title>`));
      infoLag.push(performance.now() - t);
    }

    o.log(`replication: segment lag, ${rounds} uploads as they go`);
    const segLag: number[] = [];
    const streamId = `${eventId}-bench-s1-20000-${Date.now().toString(36)}`;
    const live = join(a.config.dataDir, 'live', streamId);
    mkdirSync(live, { recursive: true });
    const durations: number[] = [];
    for (let i = 0; i < rounds; i++) {
      durations.push(2);
      const seg = `seg${String(i).padStart(5, '0')}.ts`;
      writeFileSync(join(live, seg), Buffer.alloc(12_000, i & 0xff));
      writeFileSync(join(live, 'index.m3u8'), playlist(durations, false));
      const t = performance.now();
      const up = await a.broker.call<{ uploadId: string; nodeId: string }, unknown>('content-storage.beginStream', { eventId, streamId }, { nodeID: 'bench-s1' });
      const files: Record<string, number> = {};
      for (const f of [seg, 'index.m3u8']) {
        const data = readFileSync(join(live, f));
        await a.broker.call('content-storage.putStreamFile', { uploadId: up.uploadId, file: f, offset: 0, data: data.toString('base64') }, { nodeID: 'bench-s1' });
        files[f] = data.length;
      }
      await a.broker.call('content-storage.commitStream', { uploadId: up.uploadId, files }, { nodeID: 'bench-s1' });
      const committed = performance.now();
      const target = join(b.root, eventId, 'streams', streamId, seg);
      await until(() => existsSync(target));
      segLag.push(performance.now() - committed);
      void t;
    }

    o.log(`replication: catch-up of ${catchUpEvents} events written while dc2 was down`);
    await b.broker.stop();
    brokers.splice(brokers.indexOf(b.broker), 1);
    const ids: string[] = [];
    for (let i = 0; i < catchUpEvents; i++) {
      const id = makeEventId(String(7100000 + i));
      ids.push(id);
      await a.broker.call('content-storage.putEventInfo', { info: info(id, `catch-up ${i}`) }, { nodeID: 'bench-s1' });
      const sid = `${id}-bench-s1-20000-${Date.now().toString(36)}`;
      const dir = join(a.config.dataDir, 'live', sid);
      mkdirSync(dir, { recursive: true });
      for (let k = 0; k < 10; k++) writeFileSync(join(dir, `seg${String(k).padStart(5, '0')}.ts`), Buffer.alloc(12_000, k));
      writeFileSync(join(dir, 'index.m3u8'), playlist(Array(10).fill(2), true));
      await a.broker.call('content-storage.putStream', { eventId: id, streamId: sid, dir }, { nodeID: 'bench-s1' });
    }
    const tRestart = performance.now();
    b = await start('bench-s2', 'dc2', join(o.dir, 's2'));
    const last = ids[ids.length - 1]!;
    await until(() => ids.every((id) => existsSync(join(b.root, id, 'event-info.xml'))) && existsSync(join(b.root, last, 'streams')), 300_000);
    const catchUpMs = performance.now() - tRestart;

    const il = minMedMax(infoLag);
    const sl = minMedMax(segLag);
    return {
      name: 'replication',
      seconds: (performance.now() - t0) / 1000,
      details: { infoLag: il, segmentLag: sl, catchUp: { events: catchUpEvents, filesPerEvent: 12, ms: catchUpMs } },
      rows: [
        { name: 'replication: event-info lag', figure: il.median, unit: 'ms', target: `< ${TARGET_LAG_MS} ms`, notes: `dc1 takes the write → same bytes on dc2's disk, over NATS; min ${fmt(il.min, 1)} / median ${fmt(il.median, 1)} / max ${fmt(il.max, 1)} ms, n=${il.n}` },
        { name: 'replication: segment lag', figure: sl.median, unit: 'ms', target: `< ${TARGET_LAG_MS} ms`, notes: `an upload as it goes (12 KB segment + playlist) committed on dc1 → on dc2; min ${fmt(sl.min, 1)} / median ${fmt(sl.median, 1)} / max ${fmt(sl.max, 1)} ms, n=${sl.n}` },
        { name: 'replication: catch-up', figure: catchUpMs / 1000, unit: 's', target: '-', notes: `dc2 restarted after missing ${catchUpEvents} events (event-info + 11 stream files each) → all on dc2 (${fmt(catchUpMs / catchUpEvents, 1)} ms per event)` },
      ],
    };
  } finally {
    for (const br of brokers) await br.stop().catch(() => {});
  }
}
