import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { JitcastRegenerator, NotFoundError, StorageUnavailableError } from '../../runtime/errors.ts';

describe('JitcastRegenerator (errors that crossed the transporter)', () => {
  test('rebuilds the typed error with its message, code, type, data and retryable flag', () => {
    const sent = new NotFoundError('stream 12345674-v1-20000-abc is not live');
    // What Moleculer's transit puts on the wire: the enumerable fields plus message/stack.
    const plain = { name: sent.name, message: sent.message, code: sent.code, type: sent.type, data: { streamId: 'x' }, retryable: sent.retryable, stack: sent.stack };
    const err = new JitcastRegenerator().restoreCustomError(plain, {});
    assert.ok(err instanceof NotFoundError);
    assert.equal(err.message, 'stream 12345674-v1-20000-abc is not live');
    assert.deepEqual([(err as NotFoundError).code, (err as NotFoundError).type, (err as NotFoundError).data], [404, 'NOT_FOUND', { streamId: 'x' }]);
    assert.equal(err.name, 'NotFoundError');
  });

  test('keeps retryable for a 503 STORAGE_UNAVAILABLE', () => {
    const e = new StorageUnavailableError('content storage did not take event-info.xml');
    const err = new JitcastRegenerator().restoreCustomError({ name: e.name, message: e.message, code: e.code, type: e.type, retryable: true }, {});
    assert.ok(err instanceof StorageUnavailableError);
    assert.equal(err.message, 'content storage did not take event-info.xml');
    assert.equal((err as StorageUnavailableError).retryable, true);
  });
});
