/**
 * Waits out a node's first reporting-database open before a spec places calls. The embedded
 * database (PGlite) is created on the first event write, after the node says it is up, and the
 * creation holds the node's event loop for seconds (6-16 s measured on 2 cores): SIP, RTP, the
 * media clock and HTTP all stall meanwhile. Specs about the call path wait for it to finish so
 * their timing is the call's, not the start-up's.
 */
import type { NodeUnderTest } from './node-process.ts';

/** Resolves once the node logged its database migration (true), or after `timeoutMs` without it (false). */
export async function reportingDbSettled(node: NodeUnderTest, timeoutMs = 25_000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (/migration applied|database (ready|open)/i.test(node.output())) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}
