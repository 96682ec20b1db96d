import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  admitsCalls,
  channelCounts,
  initialVoiceState,
  resumeThreshold,
  stepVoiceState,
  voiceServerState,
  type VoiceInput,
  type VoicePorts,
  type VoiceState,
} from '../../core/voice-state.ts';

const OPTS = { suspendBelow: 2, resumeAt: 4 };

function ports(available: number, busy: number, capacity = 4, outOfService = 0): VoicePorts {
  return { capacity, available, busy, outOfService };
}

/** Runs inputs from a fresh 4-port server; returns the final state and every effect. */
function run(inputs: VoiceInput[], start = initialVoiceState(ports(4, 0), OPTS)) {
  let s: VoiceState = start;
  const effects = [];
  for (const inp of inputs) {
    const r = stepVoiceState(s, inp, OPTS);
    s = r.state;
    effects.push(...r.effects);
  }
  return { s, effects };
}

describe('voice-server state', () => {
  test('initialVoiceState() is in-service with free ports and admits calls', () => {
    const s = initialVoiceState(ports(4, 0), OPTS);
    assert.equal(voiceServerState(s), 'in-service');
    assert.equal(admitsCalls(s), true);
    assert.deepEqual(channelCounts(s), { inService: 4, busy: 0, maintenance: 0, outOfService: 0 });
  });

  test('ports below portSuspendBelow suspend the server once, with one state-changed effect', () => {
    const { s, effects } = run([{ type: 'ports', ports: ports(3, 1) }, { type: 'ports', ports: ports(2, 2) }, { type: 'ports', ports: ports(1, 3) }]);
    assert.equal(voiceServerState(s), 'suspended');
    assert.deepEqual(effects, [{ type: 'state-changed', from: 'in-service', to: 'suspended' }]);
  });

  test('a suspended server resumes only at portResumeAt free ports (hysteresis), not at portSuspendBelow', () => {
    const { s: suspended } = run([{ type: 'ports', ports: ports(1, 3) }]);
    // Calls ended, ports resting: 2 and 3 free are not enough.
    let r = stepVoiceState(suspended, { type: 'ports', ports: ports(2, 0) }, OPTS);
    assert.equal(voiceServerState(r.state), 'suspended');
    r = stepVoiceState(r.state, { type: 'ports', ports: ports(3, 0) }, OPTS);
    assert.equal(voiceServerState(r.state), 'suspended');
    assert.deepEqual(r.effects, []);
    r = stepVoiceState(r.state, { type: 'ports', ports: ports(4, 0) }, OPTS);
    assert.equal(voiceServerState(r.state), 'in-service');
    assert.deepEqual(r.effects, [{ type: 'state-changed', from: 'suspended', to: 'in-service' }]);
  });

  test('suspend is advice to routers: a suspended server still admits a call that reaches it', () => {
    const { s } = run([{ type: 'ports', ports: ports(1, 3) }]);
    assert.equal(admitsCalls(s), true);
  });

  test('portSuspendBelow 0 never suspends, even with no free port', () => {
    const opts = { suspendBelow: 0, resumeAt: 1 };
    const r = stepVoiceState(initialVoiceState(ports(4, 0), opts), { type: 'ports', ports: ports(0, 4) }, opts);
    assert.equal(voiceServerState(r.state), 'in-service');
  });

  test('resumeThreshold() is capped at the usable ports, so a small range can resume', () => {
    assert.equal(resumeThreshold(ports(0, 0, 3), OPTS), 3);
    assert.equal(resumeThreshold(ports(0, 0, 4, 1), OPTS), 3);
    assert.equal(resumeThreshold(ports(0, 0, 50), OPTS), 4);
    // Never below suspendBelow, or a server could resume into suspension.
    assert.equal(resumeThreshold(ports(0, 0, 1), OPTS), 2);
  });

  test('drain with busy channels: maintenance, refuses calls, drained only when the last call ends', () => {
    const busy = run([{ type: 'ports', ports: ports(2, 2) }]).s;
    let r = stepVoiceState(busy, { type: 'drain' }, OPTS);
    assert.equal(voiceServerState(r.state), 'maintenance');
    assert.equal(admitsCalls(r.state), false);
    assert.equal(r.state.drained, false);
    assert.deepEqual(r.effects, [{ type: 'state-changed', from: 'in-service', to: 'maintenance' }]);
    assert.deepEqual(channelCounts(r.state), { inService: 2, busy: 2, maintenance: 2, outOfService: 0 });
    r = stepVoiceState(r.state, { type: 'ports', ports: ports(2, 1) }, OPTS);
    assert.equal(r.state.drained, false);
    assert.deepEqual(r.effects, []);
    r = stepVoiceState(r.state, { type: 'ports', ports: ports(2, 0) }, OPTS);
    assert.equal(r.state.drained, true);
    assert.deepEqual(r.effects, [{ type: 'drained', busy: 0 }]);
    assert.deepEqual(channelCounts(r.state), { inService: 0, busy: 0, maintenance: 4, outOfService: 0 });
    // Reported once.
    r = stepVoiceState(r.state, { type: 'ports', ports: ports(4, 0) }, OPTS);
    assert.deepEqual(r.effects, []);
  });

  test('drain of an idle server is drained at once; drain twice changes nothing', () => {
    const r = stepVoiceState(initialVoiceState(ports(4, 0), OPTS), { type: 'drain' }, OPTS);
    assert.deepEqual(r.effects, [{ type: 'state-changed', from: 'in-service', to: 'maintenance' }, { type: 'drained', busy: 0 }]);
    const again = stepVoiceState(r.state, { type: 'drain' }, OPTS);
    assert.deepEqual(again.effects, []);
  });

  test('maintenance wins over suspend, and resume lands on suspended when ports are still low', () => {
    const { s } = run([{ type: 'ports', ports: ports(1, 3) }, { type: 'drain' }]);
    assert.equal(voiceServerState(s), 'maintenance');
    const r = stepVoiceState(s, { type: 'resume' }, OPTS);
    assert.equal(voiceServerState(r.state), 'suspended');
    assert.equal(r.state.drained, false);
    assert.deepEqual(r.effects, [{ type: 'state-changed', from: 'maintenance', to: 'suspended' }]);
  });

  test('resume of a server in service is a no-op', () => {
    const r = stepVoiceState(initialVoiceState(ports(4, 0), OPTS), { type: 'resume' }, OPTS);
    assert.deepEqual(r.effects, []);
    assert.equal(voiceServerState(r.state), 'in-service');
  });

  test('stop: out of service from any state, every channel out of service, resume does not bring it back', () => {
    const { s, effects } = run([{ type: 'drain' }, { type: 'stop' }]);
    assert.equal(voiceServerState(s), 'out-of-service');
    assert.equal(admitsCalls(s), false);
    assert.deepEqual(effects.at(-1), { type: 'state-changed', from: 'maintenance', to: 'out-of-service' });
    assert.equal(channelCounts(s).outOfService, 4);
    assert.equal(voiceServerState(stepVoiceState(s, { type: 'resume' }, OPTS).state), 'out-of-service');
  });

  test('ports that could not be bound count as out-of-service channels', () => {
    const { s } = run([{ type: 'ports', ports: ports(2, 1, 4, 1) }]);
    assert.deepEqual(channelCounts(s), { inService: 3, busy: 1, maintenance: 0, outOfService: 1 });
  });
});
