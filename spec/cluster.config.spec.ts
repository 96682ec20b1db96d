import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../cluster.config.ts';
import { ConfigError } from '../runtime/errors.ts';

const base = () => ({ secret: 'spec-secret-0123456789abcdefghijklmnopqrstuvwxyz', apiKeys: 'spec-api-key-0123456789', dataDir: mkdtempSync(join(tmpdir(), 'jitcast-config-')) });

describe('cluster.config: port availability suspend', () => {
  test('loadConfig() defaults portSuspendBelow to 2 and portResumeAt to 4', () => {
    const c = loadConfig(base(), {});
    assert.equal(c.portSuspendBelow, 2);
    assert.equal(c.portResumeAt, 4);
  });

  test('loadConfig() reads JITCAST_PORT_SUSPEND_BELOW and JITCAST_PORT_RESUME_AT over the flags', () => {
    const c = loadConfig({ ...base(), portSuspendBelow: '1', portResumeAt: '2' }, { JITCAST_PORT_SUSPEND_BELOW: '3', JITCAST_PORT_RESUME_AT: '6' });
    assert.equal(c.portSuspendBelow, 3);
    assert.equal(c.portResumeAt, 6);
  });

  test('validate() names the key: portResumeAt must exceed portSuspendBelow, portSuspendBelow must be a whole number ≥ 0', () => {
    assert.throws(() => loadConfig({ ...base(), portSuspendBelow: '4', portResumeAt: '4' }, {}), (e: Error) => e instanceof ConfigError && /'portResumeAt'/.test(e.message));
    assert.throws(() => loadConfig({ ...base(), portSuspendBelow: '-1' }, {}), (e: Error) => e instanceof ConfigError && /'portSuspendBelow'/.test(e.message));
    assert.throws(() => loadConfig({ ...base(), portSuspendBelow: '1.5' }, {}), /'portSuspendBelow'/);
    assert.equal(loadConfig({ ...base(), portSuspendBelow: '0', portResumeAt: '1' }, {}).portSuspendBelow, 0, '0 turns suspend off');
  });
});
