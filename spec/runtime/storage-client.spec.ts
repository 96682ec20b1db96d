import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Errors } from 'moleculer';
import { NotFoundError, StorageUnavailableError, ValidationFailedError } from '../../runtime/errors.ts';
import { HEDGE_AFTER_MS, SUSPECT_MS, StorageClient, type StorageBroker } from '../../runtime/storage-client.ts';
import { EVENT_ID, STREAM_ID, sampleInfo } from '../support/event-plane.ts';

type Handler = (action: string, params: any) => unknown;

/** A broker whose storage nodes answer by `handlers[nodeID]`; records every call. */
function fakeBroker(self: string, handlers: Record<string, Handler>) {
  const calls: Array<{ action: string; nodeID?: string }> = [];
  const broker: StorageBroker = {
    nodeID: self,
    registry: { getServiceList: () => Object.keys(handlers).map((nodeID) => ({ name: 'content-storage', nodeID })).concat([{ name: 'gateway', nodeID: self }]) },
    async call(action, params, opts) {
      calls.push({ action, nodeID: opts?.nodeID });
      const h = handlers[opts?.nodeID ?? ''];
      if (!h) throw new Error(`no node ${opts?.nodeID}`);
      return h(action, params);
    },
  };
  return { broker, calls };
}

const timeout = () => {
  throw new Errors.RequestTimeoutError({ action: 'content-storage.readStreamFile', nodeID: 'x' } as any);
};
const notFound = () => {
  throw new NotFoundError('no such file');
};

describe('StorageClient', () => {
  it('nodes() asks this node first, then the others', () => {
    const { broker } = fakeBroker('me', { other: () => 1, me: () => 1 });
    assert.deepEqual(new StorageClient(broker).nodes(), ['me', 'other']);
  });

  it('readStreamFile() falls back to the next node when the first answers NotFound (not replicated yet)', async () => {
    const { broker, calls } = fakeBroker('me', { me: notFound, other: () => ({ type: 'Buffer', data: [1, 2, 3] }) });
    assert.deepEqual(await new StorageClient(broker).readStreamFile(EVENT_ID, STREAM_ID, 'seg00000.ts'), Buffer.from([1, 2, 3]));
    assert.deepEqual(calls.map((c) => c.nodeID), ['me', 'other']);
  });

  it('readStreamFile() rejects with NotFoundError only when no node has the file', async () => {
    const { broker } = fakeBroker('me', { me: notFound, other: notFound });
    await assert.rejects(new StorageClient(broker).readStreamFile(EVENT_ID, STREAM_ID, 'seg00000.ts'), NotFoundError);
  });

  it('a node that timed out (dead, not yet dropped) is asked last until SUSPECT_MS pass', async () => {
    let clock = 1_000_000;
    const { broker, calls } = fakeBroker('me', { dead: timeout, live: () => Buffer.from('x') });
    const client = new StorageClient(broker, () => clock);
    // Force the dead node first once: it is the only peer besides the live one, order among peers is random.
    for (let i = 0; i < 20 && !calls.some((c) => c.nodeID === 'dead'); i++) await client.readStreamFile(EVENT_ID, STREAM_ID, 'a.ts');
    assert.ok(calls.some((c) => c.nodeID === 'dead'), 'the dead node was tried at some point');
    calls.length = 0;
    for (let i = 0; i < 10; i++) await client.readStreamFile(EVENT_ID, STREAM_ID, 'a.ts');
    assert.deepEqual(new Set(calls.map((c) => c.nodeID)), new Set(['live']));
    clock += SUSPECT_MS + 1;
    assert.deepEqual(new Set(client.nodes()), new Set(['dead', 'live']));
  });

  it('a refusal other than NotFound (validation) is the answer: no other node is asked', async () => {
    const { broker, calls } = fakeBroker('me', {
      me: () => {
        throw new ValidationFailedError('bad name');
      },
      other: () => Buffer.from('x'),
    });
    await assert.rejects(new StorageClient(broker).readStreamFile(EVENT_ID, STREAM_ID, '../x'), ValidationFailedError);
    assert.equal(calls.length, 1);
  });

  it('a read the first node has not answered within HEDGE_AFTER_MS is asked of the next node too, and the first answer wins', async () => {
    const slow = () => new Promise((r) => setTimeout(() => r(Buffer.from('late')), HEDGE_AFTER_MS * 4));
    const { broker, calls } = fakeBroker('me', { me: slow, other: () => Buffer.from('hedged') });
    assert.deepEqual(await new StorageClient(broker).readStreamFile(EVENT_ID, STREAM_ID, 'seg00000.ts'), Buffer.from('hedged'));
    assert.deepEqual(calls.map((c) => c.nodeID), ['me', 'other']);
    const info = sampleInfo({ title: 'From the hedge' });
    const two = fakeBroker('me', { me: () => new Promise((r) => setTimeout(() => r(sampleInfo({ title: 'late' })), HEDGE_AFTER_MS * 4)), other: () => info });
    assert.equal((await new StorageClient(two.broker).getEventInfo(EVENT_ID)).title, 'From the hedge');
  });

  it('a node that answers within HEDGE_AFTER_MS is the only one asked', async () => {
    const quick = () => new Promise((r) => setTimeout(() => r(Buffer.from('mine')), 5));
    const { broker, calls } = fakeBroker('me', { me: quick, other: () => Buffer.from('other') });
    assert.deepEqual(await new StorageClient(broker).readStreamFile(EVENT_ID, STREAM_ID, 'seg00000.ts'), Buffer.from('mine'));
    assert.deepEqual(calls.map((c) => c.nodeID), ['me']);
  });

  it('a hedged read waits for a slow node after the others answered NotFound, and a refusal from the hedge is the answer', async () => {
    const slowOk = () => new Promise((r) => setTimeout(() => r(Buffer.from('slow but there')), HEDGE_AFTER_MS * 2));
    const a = fakeBroker('me', { me: slowOk, other: notFound });
    assert.deepEqual(await new StorageClient(a.broker).readStreamFile(EVENT_ID, STREAM_ID, 'seg00000.ts'), Buffer.from('slow but there'));
    const hang = () => new Promise(() => {});
    const b = fakeBroker('me', {
      me: hang,
      other: () => {
        throw new ValidationFailedError('bad name');
      },
    });
    await assert.rejects(new StorageClient(b.broker).readStreamFile(EVENT_ID, STREAM_ID, 'seg00000.ts'), ValidationFailedError);
  });

  it('getEventInfo() answers from a live node when the first is unreachable', async () => {
    const info = sampleInfo();
    const { broker } = fakeBroker('me', { me: timeout, other: () => info });
    assert.deepEqual(await new StorageClient(broker).getEventInfo(EVENT_ID), info);
  });

  it('listStreams() is the union over every node that answers; an unreachable node is skipped', async () => {
    const { broker } = fakeBroker('me', {
      me: () => [{ streamId: STREAM_ID, files: ['index.m3u8', 'seg00000.ts'] }],
      other: () => [{ streamId: STREAM_ID, files: ['seg00001.ts'] }, { streamId: `${EVENT_ID}-x-1-a`, files: ['index.m3u8'] }],
      dead: timeout,
    });
    assert.deepEqual(await new StorageClient(broker).listStreams(EVENT_ID), [
      { streamId: STREAM_ID, files: ['index.m3u8', 'seg00000.ts', 'seg00001.ts'] },
      { streamId: `${EVENT_ID}-x-1-a`, files: ['index.m3u8'] },
    ]);
  });

  it('with no storage node reachable every call rejects with StorageUnavailableError', async () => {
    const { broker } = fakeBroker('me', { a: timeout });
    await assert.rejects(new StorageClient(broker).getEventInfo(EVENT_ID), StorageUnavailableError);
    await assert.rejects(new StorageClient(broker).listEventIds(), StorageUnavailableError);
    await assert.rejects(new StorageClient(fakeBroker('me', {}).broker).putEventInfo(sampleInfo()), StorageUnavailableError);
  });

  it('putEventInfo() writes to one node only (that node replicates it)', async () => {
    const { broker, calls } = fakeBroker('me', { me: () => ({ ok: true }), other: () => ({ ok: true }) });
    await new StorageClient(broker).putEventInfo(sampleInfo());
    assert.deepEqual(calls, [{ action: 'content-storage.putEventInfo', nodeID: 'me' }]);
  });

  it('readStreamFile() of a playlist prefers the final one (#EXT-X-ENDLIST), else the longest, over a copy still unfinished', async () => {
    const partial = '#EXTM3U\n#EXTINF:2,\nseg00000.ts\n';
    const longer = partial + '#EXTINF:2,\nseg00001.ts\n';
    const final = partial + '#EXT-X-ENDLIST\n';
    const read = (h: Record<string, Handler>) => new StorageClient(fakeBroker('me', h).broker).readStreamFile(EVENT_ID, STREAM_ID, 'index.m3u8').then((b) => b.toString());
    assert.equal(await read({ me: () => Buffer.from(longer), other: () => Buffer.from(final) }), final);
    assert.equal(await read({ me: () => Buffer.from(partial), other: () => Buffer.from(longer), gone: notFound }), longer);
    assert.equal(await read({ me: notFound, other: timeout, third: () => ({ type: 'Buffer', data: [...Buffer.from(final)] }) }), final);
    await assert.rejects(read({ me: notFound, other: notFound }), NotFoundError);
  });
});
