/**
 * Starts one jitcast node: a broker plus the actors for the roles in its config. `npm start` runs
 * every role on one node (embedded mode); `jitcast node --roles …` runs a cluster node.
 *
 * The dial-in address `sipHost:sipPort` belongs to the node's voice server when the node runs one
 * (embedded mode, or a cluster node with `voice-server` among its roles): its `sip-router` then
 * stays inactive and calls reach that voice server as before. A node with `sip-router` and no
 * `voice-server` is a front door: the router takes `sipPort` and forwards each call to a voice
 * server of the cluster, which listens on its own node's `--sip-port`.
 */
import type { ServiceBroker, ServiceSchema } from 'moleculer';
import type { JitcastConfig, Role } from '../cluster.config.ts';
import { createBroker } from './broker.ts';
import { createGatewayService } from '../actors/gateway.service.ts';
import { createReservationService } from '../actors/reservation.service.ts';
import { createVoiceServerService } from '../actors/voice-server.service.ts';
import { createEncoderPortService } from '../actors/encoder-port.service.ts';
import { createMonitoringService } from '../actors/monitoring.service.ts';
import { createEventService } from '../actors/event.service.ts';
import { createAttendeeAccessService } from '../actors/attendee-access.service.ts';
import { createContentStorageService } from '../actors/content-storage.service.ts';
import { createArchiveCoordinatorService } from '../actors/archive-coordinator.service.ts';
import { createSipRouterService } from '../actors/sip-router.service.ts';
import { createUsageService } from '../actors/usage.service.ts';

/** The actor factory of each role. */
const FACTORIES: Partial<Record<Role, (config: JitcastConfig) => ServiceSchema>> = {
  'content-storage': createContentStorageService,
  monitoring: createMonitoringService,
  event: createEventService,
  'archive-coordinator': createArchiveCoordinatorService,
  'encoder-port': createEncoderPortService,
  reservation: createReservationService,
  'attendee-access': createAttendeeAccessService,
  'voice-server': createVoiceServerService,
  'sip-router': createSipRouterService,
  gateway: createGatewayService,
};

/** Whether the node's `sip-router` takes the dial-in port: only when no local voice server holds it. */
export function routerActive(config: Pick<JitcastConfig, 'roles'>): boolean {
  return config.roles.includes('sip-router') && !config.roles.includes('voice-server');
}

/** A running node. */
export interface RunningNode {
  broker: ServiceBroker;
  config: JitcastConfig;
  stop(): Promise<void>;
}

/** Creates the broker, loads the actors of the configured roles and starts them. */
export async function startNode(config: JitcastConfig): Promise<RunningNode> {
  const broker = createBroker(config);
  for (const role of config.roles) {
    if (role === 'sip-router' && !routerActive(config)) {
      const msg = `sip-router inactive on this node: its voice server answers the dial-in address [sip:${config.sipHost}:${config.sipPort}]`;
      if (config.natsUrl) broker.logger.info(msg);
      else broker.logger.debug(msg);
      continue;
    }
    const factory = FACTORIES[role];
    if (factory) broker.createService(factory(config));
    // Usage reports are monitoring data (issue 5 item 4): the usage actor runs with that role.
    if (role === 'monitoring') broker.createService(createUsageService(config));
  }
  try {
    await broker.start();
  } catch (err) {
    // Stop what did start (services, the NATS connection) so a node that cannot start leaves nothing running.
    await broker.stop().catch(() => {});
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    broker,
    config,
    stop: () => (stopping ??= broker.stop()),
  };
}
