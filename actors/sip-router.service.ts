/**
 * The `sip-router` actor: the cluster's one SIP dial-in address (the front door) on
 * `sipHost:sipPort`. It binds each call just-in-time to a healthy voice server with free ports,
 * preferring its own data center (callers arrive at the front door of theirs) and falling over to
 * another data center when its own has none: the patent's automatic routing.
 *
 * Mechanism: a stateless proxy with a short memory (runtime/sip/proxy.ts, RFC 3261 §16.11) that
 * real phones and trunks follow; the routing decision is core/routing.ts over the `VoiceStatus`
 * every voice server broadcasts each heartbeat. A server not heard within the heartbeat timeout
 * is dropped, one that leaves the cluster (`$node.disconnected`) at once, one that fails its health
 * test (`EVENTS.assetHealth`) until it passes again.
 *
 * Runs only where no voice server of the same node already answers `sipPort` (runtime/node.ts):
 * in embedded mode the voice server is the dial-in address itself.
 */
import type { Context, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import { RoutingTable } from '../core/routing.ts';
import { EVENTS, type AssetHealth, type VoiceStatus } from '../runtime/contracts.ts';
import { SipProxy, type ProxyRoutes, type ProxyTarget, type SipProxyStats } from '../runtime/sip/proxy.ts';

/** Retry-After (s) of the 503 the router answers when no voice server can take a call. */
const NO_SERVER_RETRY_AFTER_S = 5;

/** What `sip-router.status` returns. */
export interface SipRouterStatus {
  nodeId: string;
  dataCenter: string;
  sip: { host: string; port: number };
  voiceServers: ReturnType<RoutingTable['view']>;
  stats: SipProxyStats;
}

/** Creates the front-door actor for this node. */
export function createSipRouterService(config: JitcastConfig): ServiceSchema {
  return {
    name: 'sip-router',

    created() {
      this.table = new RoutingTable({ timeoutMs: config.heartbeatTimeoutS * 1000 });
    },

    async started() {
      const table = this.table as RoutingTable;
      const routes: ProxyRoutes = {
        pick: (exclude) => {
          const c = table.pick({ dataCenter: config.dataCenter, now: Date.now(), exclude });
          return c && { nodeId: c.nodeId, host: c.sip.host, port: c.sip.port, dataCenter: c.dataCenter, crossDataCenter: c.crossDataCenter };
        },
        nodeAt: (host, port) => table.nodeAt(host, port),
        refused: (nodeId) => table.refuse(nodeId),
      };
      const proxy = await SipProxy.listen({
        host: config.sipHost,
        port: config.sipPort,
        routes,
        logger: this.logger,
        retryAfterS: NO_SERVER_RETRY_AFTER_S,
      });
      this.proxy = proxy;
      proxy.on('routed', ({ callId, target, attempt, reason }: { callId: string; target: ProxyTarget; attempt: number; reason: string }) => {
        const over = target.crossDataCenter ? ` fall-over from:${config.dataCenter}` : '';
        const again = reason === 'new' ? '' : ` attempt:${attempt} after:${reason}`;
        this.logger.info(`call routed [call:${callId} node:${target.nodeId} dc:${target.dataCenter}${over}${again}]`);
      });
      proxy.on('unavailable', ({ callId, tried }: { callId: string; tried: string[] }) => {
        this.logger.warn(`no voice server can take the call: 503 [call:${callId} tried:${tried.join(',') || '-'} known:${table.size}]`);
      });
      proxy.on('message-error', (info: { from: string; reason: string }) => this.logger.warn(`malformed SIP [from:${info.from}] ${info.reason}`));
      this.expiry = setInterval(() => {
        for (const id of table.expire(Date.now())) this.logger.warn(`voice server silent for ${config.heartbeatTimeoutS} s: no more calls to it [node:${id}]`);
      }, 250);
      this.logger.info(`sip router up [sip:${config.sipHost}:${config.sipPort} dc:${config.dataCenter}]`);
      void this.prime();
    },

    async stopped() {
      clearInterval(this.expiry);
      await (this.proxy as SipProxy | undefined)?.close();
    },

    events: {
      [EVENTS.voiceStatus]: {
        handler(this: any, ctx: Context<VoiceStatus>) {
          const table = this.table as RoutingTable;
          const before = table.get(ctx.params.nodeId);
          if (!table.update(ctx.params, Date.now())) return;
          if (!before) this.logger.info(`voice server joined [node:${ctx.params.nodeId} dc:${ctx.params.dataCenter} sip:${ctx.params.sip.host}:${ctx.params.sip.port} state:${ctx.params.state}]`);
          else if (before.state !== ctx.params.state) this.logger.info(`voice server ${ctx.params.state} [node:${ctx.params.nodeId} was:${before.state} free:${ctx.params.ports.available}]`);
        },
      },
      '$node.disconnected': {
        handler(this: any, ctx: Context<{ node: { id: string }; unexpected?: boolean }>) {
          const id = ctx.params.node.id;
          if ((this.table as RoutingTable).remove(id)) {
            this.logger.warn(`voice server left the cluster: no more calls to it [node:${id} unexpected:${ctx.params.unexpected === true}]`);
          }
        },
      },
      [EVENTS.assetHealth]: {
        handler(this: any, ctx: Context<AssetHealth>) {
          const h = ctx.params;
          if (h?.asset !== 'voice-server' || typeof h.nodeId !== 'string' || typeof h.healthy !== 'boolean') return;
          (this.table as RoutingTable).setHealth(h.nodeId, h.healthy);
          // Monitoring repeats every verdict; only a change is news here.
          if (h.change === 'evicted') this.logger.warn(`voice server failed its health test: no calls to it [node:${h.nodeId}]${h.reason ? ` ${h.reason}` : ''}`);
          if (h.change === 'readmitted') this.logger.info(`voice server passed its health test: calls again [node:${h.nodeId}]`);
        },
      },
    },

    actions: {
      status: {
        handler(this: any): SipRouterStatus {
          const proxy = this.proxy as SipProxy | undefined;
          return {
            nodeId: config.nodeId,
            dataCenter: config.dataCenter,
            sip: { host: config.sipHost, port: config.sipPort },
            voiceServers: (this.table as RoutingTable).view(Date.now(), config.dataCenter),
            stats: proxy?.stats() ?? { datagrams: 0, requests: 0, responses: 0, malformed: 0, invites: 0, rerouted: 0, unavailable: 0, remembered: 0 },
          };
        },
      },
    },

    methods: {
      /** Asks the voice servers already up for their status, so calls route before their next heartbeat. */
      async prime(this: any) {
        const list = this.broker.registry.getServiceList({ onlyAvailable: true, withActions: false }) as Array<{ name: string; nodeID: string }>;
        const nodes = [...new Set(list.filter((s) => s.name === 'voice-server').map((s) => s.nodeID))];
        await Promise.all(
          nodes.map(async (nodeID) => {
            try {
              const s = (await this.broker.call('voice-server.status', {}, { nodeID, timeout: 1500, retries: 0 })) as any;
              const table = this.table as RoutingTable;
              if (table.get(s.nodeId)) return; // a broadcast was faster
              table.update(
                {
                  nodeId: s.nodeId,
                  dataCenter: s.dataCenter,
                  sip: s.sip,
                  state: s.state,
                  drained: s.drained,
                  ports: { capacity: s.ports.capacity, available: s.ports.available, busy: s.ports.busy, suspendBelow: s.ports.suspendBelow, resumeAt: s.ports.resumeAt },
                  channels: s.channelStates,
                  seq: 0, // any broadcast status replaces it
                  updatedAt: new Date(0).toISOString(),
                },
                Date.now(),
              );
            } catch (err) {
              this.logger.debug(`no status from voice server yet [node:${nodeID}] ${(err as Error).message}`);
            }
          }),
        );
      },
    },
  } as ServiceSchema;
}
