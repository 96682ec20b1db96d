import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { makeResponse, parseSip, serializeSip, type SipRequest, type SipResponse } from '../../../codecs/sip.ts';
import {
  clientTransactionKey,
  DEFAULT_TIMERS,
  InviteServerTransaction,
  NonInviteClientTransaction,
  NonInviteServerTransaction,
  serverTransactionKey,
  TransactionLayer,
  type Clock,
  type Endpoint,
  type TxAction,
} from '../../../runtime/sip/transactions.ts';

const T = DEFAULT_TIMERS; // T1 500, T2 4000, T4 5000

/** A clock that only moves when told to. */
class FakeClock implements Clock {
  now = 0;
  #id = 0;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#id;
    this.#timers.set(id, { at: this.now + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  get pending(): number {
    return this.#timers.size;
  }

  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.#timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.#timers.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
    }
    this.now = end;
  }
}

function req(method: string, branch = 'z9hG4bK776asdhds', cseqMethod = method): SipRequest {
  const text = [
    `${method} sip:bob@biloxi.example.com SIP/2.0`,
    `Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=${branch}`,
    'Max-Forwards: 70',
    'To: Bob <sip:bob@biloxi.example.com>',
    'From: Alice <sip:alice@atlanta.example.com>;tag=1928301774',
    'Call-ID: a84b4c76e66710@pc33.atlanta.example.com',
    `CSeq: 314159 ${cseqMethod}`,
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  return parseSip(Buffer.from(text)) as SipRequest;
}

const sends = (actions: TxAction[]): number[] =>
  actions.filter((a): a is Extract<TxAction, { kind: 'send' }> => a.kind === 'send').map((a) => (a.message.kind === 'response' ? a.message.status : 0));
const timer = (actions: TxAction[], name: string): number | undefined =>
  actions.find((a): a is Extract<TxAction, { kind: 'start-timer' }> => a.kind === 'start-timer' && a.timer === name)?.ms;

describe('InviteServerTransaction (RFC 3261 §17.2.1, RFC 6026)', () => {
  it('receive() of a retransmitted INVITE re-sends the last provisional response in Proceeding', () => {
    const invite = req('INVITE');
    const tx = new InviteServerTransaction(invite, T);
    assert.deepEqual(tx.receive(invite), []);
    assert.deepEqual(sends(tx.respond(makeResponse(invite, 180, 'Ringing', { toTag: 'a' }))), [180]);
    assert.deepEqual(sends(tx.receive(invite)), [180]);
    assert.equal(tx.state, 'proceeding');
  });

  it('respond(486) arms Timer G at T1 and H at 64·T1; fire(G) re-sends and doubles G up to T2', () => {
    const invite = req('INVITE');
    const tx = new InviteServerTransaction(invite, T);
    const first = tx.respond(makeResponse(invite, 486, 'Busy Here', { toTag: 'a' }));
    assert.equal(tx.state, 'completed');
    assert.equal(timer(first, 'G'), 500);
    assert.equal(timer(first, 'H'), 32_000);
    const intervals = Array.from({ length: 5 }, () => {
      const a = tx.fire('G');
      assert.deepEqual(sends(a), [486]);
      return timer(a, 'G');
    });
    assert.deepEqual(intervals, [1000, 2000, 4000, 4000, 4000]);
    assert.deepEqual(sends(tx.receive(invite)), [486]);
  });

  it('receive(ACK) in Completed moves to Confirmed with Timer I = T4, and fire(I) terminates', () => {
    const invite = req('INVITE');
    const tx = new InviteServerTransaction(invite, T);
    tx.respond(makeResponse(invite, 603, 'Decline', { toTag: 'a' }));
    const onAck = tx.receive(req('ACK', 'z9hG4bK776asdhds'));
    assert.equal(tx.state, 'confirmed');
    assert.deepEqual(
      onAck.filter((a) => a.kind === 'stop-timer').map((a) => (a.kind === 'stop-timer' ? a.timer : '')),
      ['G', 'H'],
    );
    assert.equal(timer(onAck, 'I'), 5000);
    assert.deepEqual(tx.receive(req('ACK')), []);
    assert.deepEqual(tx.fire('I'), [{ kind: 'terminated' }]);
    assert.equal(tx.state, 'terminated');
  });

  it('fire(H) without an ACK reports a timeout and terminates', () => {
    const invite = req('INVITE');
    const tx = new InviteServerTransaction(invite, T);
    tx.respond(makeResponse(invite, 480, 'Temporarily Unavailable', { toTag: 'a' }));
    assert.deepEqual(tx.fire('H'), [{ kind: 'timeout' }, { kind: 'terminated' }]);
  });

  it('respond(200) moves to Accepted with Timer L; retransmitted INVITEs are absorbed, TU 2xx pass through', () => {
    const invite = req('INVITE');
    const tx = new InviteServerTransaction(invite, T);
    const ok = makeResponse(invite, 200, 'OK', { toTag: 'a' });
    const a = tx.respond(ok);
    assert.equal(tx.state, 'accepted');
    assert.equal(timer(a, 'L'), 32_000);
    assert.deepEqual(tx.receive(invite), []);
    assert.deepEqual(sends(tx.respond(ok)), [200]);
    assert.deepEqual(tx.respond(makeResponse(invite, 500, 'Server Internal Error')), []);
    assert.deepEqual(tx.fire('L'), [{ kind: 'terminated' }]);
  });
});

describe('NonInviteServerTransaction (RFC 3261 §17.2.2)', () => {
  it('absorbs retransmissions in Trying, re-sends the final response in Completed, and terminates on Timer J', () => {
    const bye = req('BYE');
    const tx = new NonInviteServerTransaction(bye, T);
    assert.deepEqual(tx.receive(bye), []);
    const a = tx.respond(makeResponse(bye, 200, 'OK'));
    assert.deepEqual(sends(a), [200]);
    assert.equal(timer(a, 'J'), 32_000);
    assert.deepEqual(sends(tx.receive(bye)), [200]);
    assert.deepEqual(tx.respond(makeResponse(bye, 500, 'Server Internal Error')), []);
    assert.deepEqual(tx.fire('J'), [{ kind: 'terminated' }]);
    assert.equal(tx.state, 'terminated');
  });
});

describe('NonInviteClientTransaction (RFC 3261 §17.1.2)', () => {
  it('start() sends with E = T1 and F = 64·T1; fire(E) doubles up to T2 in Trying and stays at T2 in Proceeding', () => {
    const bye = req('BYE');
    const tx = new NonInviteClientTransaction(bye, T);
    const s = tx.start();
    assert.deepEqual(sends(s), [0]);
    assert.equal(timer(s, 'E'), 500);
    assert.equal(timer(s, 'F'), 32_000);
    assert.deepEqual([1, 2, 3, 4].map(() => timer(tx.fire('E'), 'E')), [1000, 2000, 4000, 4000]);
    const ringing = tx.receive(makeResponse(bye, 100, 'Trying'));
    assert.equal(ringing[0].kind, 'deliver');
    assert.equal(tx.state, 'proceeding');
    assert.equal(timer(tx.fire('E'), 'E'), 4000);
  });

  it('receive(200) delivers it, stops E and F and arms K = T4; later responses are absorbed', () => {
    const bye = req('BYE');
    const tx = new NonInviteClientTransaction(bye, T);
    tx.start();
    const ok = makeResponse(bye, 200, 'OK', { toTag: 'b' });
    const a = tx.receive(ok);
    assert.deepEqual(a.map((x) => x.kind), ['stop-timer', 'stop-timer', 'deliver', 'start-timer']);
    assert.equal(timer(a, 'K'), 5000);
    assert.deepEqual(tx.receive(ok), []);
    assert.deepEqual(tx.fire('K'), [{ kind: 'terminated' }]);
  });

  it('fire(F) before any final response reports a timeout and terminates', () => {
    const tx = new NonInviteClientTransaction(req('BYE'), T);
    tx.start();
    assert.deepEqual(tx.fire('F'), [{ kind: 'stop-timer', timer: 'E' }, { kind: 'timeout' }, { kind: 'terminated' }]);
    assert.deepEqual(tx.fire('E'), []);
  });
});

describe('transaction keys', () => {
  it('serverTransactionKey() maps an ACK onto its INVITE and keeps CANCEL apart (§17.2.3)', () => {
    const invite = serverTransactionKey(req('INVITE'));
    assert.equal(serverTransactionKey(req('ACK')), invite);
    assert.notEqual(serverTransactionKey(req('CANCEL')), invite);
    assert.equal(serverTransactionKey(req('CANCEL'), 'INVITE'), invite);
    assert.notEqual(serverTransactionKey(req('INVITE', 'z9hG4bKother')), invite);
  });

  it('serverTransactionKey() falls back to Call-ID, From and CSeq for a branch without the magic cookie', () => {
    const a = serverTransactionKey(req('INVITE', 'old2543'));
    assert.match(a, /^2543\|a84b4c76e66710@pc33\.atlanta\.example\.com\|/);
    assert.equal(serverTransactionKey(req('ACK', 'old2543')), a);
  });

  it('clientTransactionKey() matches a response by branch and CSeq method (§17.1.3)', () => {
    const bye = req('BYE');
    assert.equal(clientTransactionKey(makeResponse(bye, 200, 'OK')), clientTransactionKey(bye));
    assert.notEqual(clientTransactionKey(makeResponse(req('CANCEL'), 200, 'OK')), clientTransactionKey(bye));
  });
});

describe('TransactionLayer with a fake clock', () => {
  function layer(): { layer: TransactionLayer; clock: FakeClock; sent: Array<{ buf: Buffer; to: Endpoint }> } {
    const clock = new FakeClock();
    const sent: Array<{ buf: Buffer; to: Endpoint }> = [];
    return { layer: new TransactionLayer({ send: (buf, to) => sent.push({ buf, to }), timers: T, clock }), clock, sent };
  }
  const peer = { address: '192.0.2.4', port: 5060 };

  it('request() retransmits the BYE per Timer E and resolves with the 200; the transaction is gone after K', async () => {
    const { layer: l, clock, sent } = layer();
    const bye = req('BYE', 'z9hG4bKbye1');
    const done = l.request(bye, peer);
    clock.advance(1500); // sends at 0, 500, 1500
    assert.equal(sent.length, 3);
    assert.deepEqual(sent[0].buf, serializeSip(bye));
    assert.deepEqual(sent[0].to, peer);
    assert.equal(l.receiveResponse(makeResponse(bye, 200, 'OK')), true);
    const res = await done;
    assert.equal(res?.status, 200);
    assert.equal(l.size, 1);
    clock.advance(5000);
    assert.equal(l.size, 0);
    assert.equal(clock.pending, 0);
  });

  it('request() resolves undefined after Timer F (64·T1) and 11 transmissions', async () => {
    const { layer: l, clock, sent } = layer();
    const done = l.request(req('BYE', 'z9hG4bKbye2'), peer);
    clock.advance(32_000);
    assert.equal(await done, undefined);
    assert.equal(sent.length, 11); // 0, .5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5 s
    assert.equal(l.size, 0);
  });

  it('receiveResponse() returns false for a response matching no transaction', () => {
    const { layer: l } = layer();
    assert.equal(l.receiveResponse(makeResponse(req('BYE'), 200, 'OK') as SipResponse), false);
  });

  it('respond(486) on a server INVITE is retransmitted until the ACK and the table empties after Timer I', () => {
    const { layer: l, clock, sent } = layer();
    const invite = req('INVITE', 'z9hG4bKinv1');
    const key = serverTransactionKey(invite);
    l.createServer(key, invite, peer);
    l.respond(key, makeResponse(invite, 486, 'Busy Here', { toTag: 'x' }));
    clock.advance(3500); // 0, 0.5, 1.5, 3.5 s
    assert.equal(sent.length, 4);
    assert.equal(l.receiveRequest(key, req('ACK', 'z9hG4bKinv1')), true);
    clock.advance(4000);
    assert.equal(sent.length, 4);
    assert.equal(l.findServer(key)?.state, 'confirmed');
    clock.advance(1000);
    assert.equal(l.findServer(key), undefined);
    assert.equal(l.size, 0);
  });

  it('close() clears every timer and resolves pending requests with undefined', async () => {
    const { layer: l, clock } = layer();
    const done = l.request(req('BYE', 'z9hG4bKbye3'), peer);
    l.close();
    assert.equal(await done, undefined);
    assert.equal(clock.pending, 0);
    assert.equal(l.size, 0);
  });
});
