/**
 * Asset health (issue 3 item 6): the monitoring actor tests every voice server and encoder on a
 * schedule with a synthetic call (runtime/health-probe.ts); this book keeps each asset's verdict
 * and says when one leaves its pool (evicted) or comes back (re-admitted).
 *
 * - An asset is in its pool until it fails a test: one failure evicts it. The tests themselves
 *   wait generously (a synthetic call or a first segment takes 1-3 s; the limit is several times
 *   that), so a failure means the asset cannot serve a call now, not that it was slow once.
 * - An evicted asset is re-admitted after one passing test.
 * - A test that could not be run (the asset refused it because it is draining or full) changes
 *   nothing: its state is already in its own status.
 * - Exactly one monitoring actor in the cluster runs the tests (`isHealthTester`): the one on the
 *   lowest node ID among those running monitoring. Two testers for a moment (a node joining) cost
 *   a test twice, never a wrong verdict, since every verdict is a fresh test.
 * Pure: times come from the caller.
 */

/** What is tested. */
export type AssetKind = 'voice-server' | 'encoder-port';

/** The outcome of one test. */
export interface TestVerdict {
  asset: AssetKind;
  nodeId: string;
  /** pass: it served the synthetic call; fail: it did not; skipped: it refused the test for a reason its status already shows. */
  outcome: 'pass' | 'fail' | 'skipped';
  /** When the test ended (ms). */
  at: number;
  /** How long the test took (ms). */
  ms: number;
  /** Why it failed or was skipped. */
  reason?: string;
}

/** One asset as the book holds it. */
export interface HealthRecord {
  asset: AssetKind;
  nodeId: string;
  /** True while it is in its pool. */
  healthy: boolean;
  /** When `healthy` last changed (or the asset was first tested), ms. */
  since: number;
  lastTestAt: number;
  lastOutcome: TestVerdict['outcome'];
  /** Duration of the last test, ms. */
  lastMs: number;
  /** Why the last test failed or was skipped. */
  reason?: string;
  passes: number;
  failures: number;
}

/** A change of pool membership. */
export type HealthChange = 'evicted' | 'readmitted';

/** Key of an asset in the book. */
export function assetKey(asset: AssetKind, nodeId: string): string {
  return `${asset}:${nodeId}`;
}

/** Applies one verdict to an asset's record (undefined: never tested; an untested asset counts as healthy). */
export function applyVerdict(prev: HealthRecord | undefined, v: TestVerdict): { record: HealthRecord; change?: HealthChange } {
  const base: HealthRecord = prev ?? { asset: v.asset, nodeId: v.nodeId, healthy: true, since: v.at, lastTestAt: v.at, lastOutcome: v.outcome, lastMs: v.ms, passes: 0, failures: 0 };
  const record: HealthRecord = { ...base, lastTestAt: v.at, lastOutcome: v.outcome, lastMs: v.ms };
  if (v.reason !== undefined) record.reason = v.reason;
  else delete record.reason;
  if (v.outcome === 'skipped') return { record };
  if (v.outcome === 'pass') {
    record.passes++;
    if (base.healthy) return { record };
    record.healthy = true;
    record.since = v.at;
    return { record, change: 'readmitted' };
  }
  record.failures++;
  if (!base.healthy) return { record };
  record.healthy = false;
  record.since = v.at;
  return { record, change: 'evicted' };
}

/** The verdicts of every asset. */
export class HealthBook {
  readonly #records = new Map<string, HealthRecord>();

  /** Records a verdict; returns the record and the pool change it caused, if any. */
  apply(v: TestVerdict): { record: HealthRecord; change?: HealthChange } {
    const key = assetKey(v.asset, v.nodeId);
    const out = applyVerdict(this.#records.get(key), v);
    this.#records.set(key, out.record);
    return out;
  }

  /** Takes a record as another tester reported it (a verdict heard on the broker). */
  adopt(record: HealthRecord): void {
    this.#records.set(assetKey(record.asset, record.nodeId), { ...record });
  }

  get(asset: AssetKind, nodeId: string): HealthRecord | undefined {
    return this.#records.get(assetKey(asset, nodeId));
  }

  /** Forgets every asset of a node (it left the cluster). Returns how many were dropped. */
  forget(nodeId: string): number {
    let n = 0;
    for (const [k, r] of this.#records) {
      if (r.nodeId === nodeId) {
        this.#records.delete(k);
        n++;
      }
    }
    return n;
  }

  /** Every record, voice servers first, then by node ID. */
  list(): HealthRecord[] {
    return [...this.#records.values()].sort((a, b) => (a.asset === b.asset ? (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0) : a.asset === 'voice-server' ? -1 : 1));
  }
}

/** Whether this node's monitoring actor runs the health tests: the lowest node ID among those running monitoring. */
export function isHealthTester(selfId: string, monitoringNodeIds: Iterable<string>): boolean {
  let lowest: string | undefined;
  for (const id of monitoringNodeIds) if (lowest === undefined || id < lowest) lowest = id;
  return lowest === undefined || lowest === selfId;
}
