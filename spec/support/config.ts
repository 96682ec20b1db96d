/** Test configuration: a fresh temp data directory and explicit ports, every other field as a node would load it. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type ConfigOverrides, type JitcastConfig } from '../../cluster.config.ts';

/** A validated config for a spec; `overrides` use flag syntax (strings), as on the command line. */
export function testConfig(overrides: ConfigOverrides = {}): JitcastConfig {
  const dataDir = overrides.dataDir ?? mkdtempSync(join(tmpdir(), 'jitcast-spec-'));
  return loadConfig(
    {
      nodeId: 'spec-node',
      secret: 'spec-secret-0123456789abcdefghijklmnopqrstuvwxyz',
      apiKeys: 'spec-api-key-0123456789',
      logLevel: 'warn',
      ...overrides,
      dataDir,
    },
    {},
  );
}
