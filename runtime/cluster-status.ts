/**
 * Collects the cluster at a glance for `GET /api/cluster` and `jitcast status`: every node with
 * its data center and roles, every voice server's ports and channels, every encoder port, the
 * live streams, and the archive coordinator. Asks each actor where it runs; a node that does not
 * answer in time is shown with its error instead of holding the whole answer up.
 */
import type { ServiceBroker } from 'moleculer';
import type { RecentError } from './recent-errors.ts';

/** What `GET /api/cluster` returns. */
export interface ClusterStatus {
  generatedAt: string;
  nodes: Array<{ id: string; dataCenter?: string; roles?: string[]; address?: string; available: boolean; local: boolean }>;
  /** Each voice server's `voice-server.status`: state (in-service, suspended, maintenance, out-of-service), drained, ports, channels. */
  voiceServers: any[];
  /** Each front door's `sip-router.status`: its address and how it sees every voice server. */
  sipRouters: any[];
  encoderPorts: any[];
  streams: any[];
  /** `monitoring.health`: every voice server and encoder with its last health test, and who tests. */
  pools?: { tester?: string; intervalS: number; assets: any[] };
  /** The elected archive leader (DESIGN.md "Archive leader election"): the one most coordinators name. */
  archiveLeader?: string;
  /** Each archive coordinator's `archive-coordinator.leader`: its view of the election. */
  archiveCoordinators?: any[];
  errors: Array<{ nodeId: string; action: string; message: string }>;
  /** Warn/error log entries the nodes broadcast, newest first, as the asking gateway heard them (runtime/recent-errors.ts). */
  recentErrors?: RecentError[];
}

/** What the caller adds to the status. */
export interface ClusterStatusOptions {
  /** The recent errors this gateway heard. */
  recentErrors?: () => RecentError[];
}

function nodesRunning(broker: ServiceBroker, service: string): string[] {
  const list = broker.registry.getServiceList({ onlyAvailable: true, withActions: false }) as Array<{ name: string; nodeID: string }>;
  return [...new Set(list.filter((s) => s.name === service).map((s) => s.nodeID))].sort();
}

/** The leader most coordinators name (ties: the lower node ID), or undefined with no coordinator. */
function electedLeader(views: any[]): string | undefined {
  const votes = new Map<string, number>();
  for (const v of views) if (typeof v?.leader === 'string') votes.set(v.leader, (votes.get(v.leader) ?? 0) + 1);
  return [...votes].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]?.[0];
}

/** Gathers the status from every node (1.5 s per call at most). */
export async function collectClusterStatus(broker: ServiceBroker, opts: ClusterStatusOptions = {}): Promise<ClusterStatus> {
  const errors: ClusterStatus['errors'] = [];
  const ask = async (action: string, nodeID: string, params: object = {}) => {
    try {
      return await broker.call(action, params, { nodeID, timeout: 1500 });
    } catch (err) {
      errors.push({ nodeId: nodeID, action, message: (err as Error).message });
      return undefined;
    }
  };
  const nodes = (broker.registry.getNodeList({ onlyAvailable: false, withServices: false }) as any[]).map((n) => ({
    id: n.id as string,
    dataCenter: n.metadata?.dataCenter as string | undefined,
    roles: n.metadata?.roles as string[] | undefined,
    address: (n.ipList?.[0] ?? n.hostname) as string | undefined,
    available: n.available as boolean,
    local: n.local as boolean,
  }));
  const hasMonitoring = nodesRunning(broker, 'monitoring').length > 0;
  // Every coordinator's view of the election (asked alongside the rest): they agree once announcements have flowed for a heartbeat.
  const archiveViewsAsked = Promise.all(nodesRunning(broker, 'archive-coordinator').map((id) => ask('archive-coordinator.leader', id)));
  const [voiceServers, sipRouters, encoderLists, streams, pools] = await Promise.all([
    Promise.all(nodesRunning(broker, 'voice-server').map((id) => ask('voice-server.status', id))),
    Promise.all(nodesRunning(broker, 'sip-router').map((id) => ask('sip-router.status', id))),
    Promise.all(nodesRunning(broker, 'encoder-port').map((id) => ask('encoder-port.list', id))),
    nodesRunning(broker, 'monitoring').length ? broker.call('monitoring.activeStreams', {}, { timeout: 1500 }).catch((err: Error) => {
      errors.push({ nodeId: '-', action: 'monitoring.activeStreams', message: err.message });
      return [];
    }) : [],
    hasMonitoring
      ? broker.call('monitoring.health', {}, { timeout: 1500 }).catch((err: Error) => {
          errors.push({ nodeId: '-', action: 'monitoring.health', message: err.message });
          return undefined;
        })
      : undefined,
  ]);
  const archiveViews = (await archiveViewsAsked).filter(Boolean);
  const encoderPorts = encoderLists.flatMap((l: any) => (Array.isArray(l) ? l : (l?.ports ?? [])));
  return {
    generatedAt: new Date().toISOString(),
    nodes,
    voiceServers: voiceServers.filter(Boolean),
    sipRouters: sipRouters.filter(Boolean),
    encoderPorts,
    streams: streams as any[],
    ...(pools ? { pools: pools as ClusterStatus['pools'] } : {}),
    archiveLeader: electedLeader(archiveViews),
    archiveCoordinators: archiveViews,
    errors,
    ...(opts.recentErrors ? { recentErrors: opts.recentErrors() } : {}),
  };
}
