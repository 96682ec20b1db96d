/**
 * Starts one jitcast node: a broker plus the actors for the roles in its config. `npm start` runs
 * every role on one node (embedded mode); `jitcast node --roles …` runs a cluster node.
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

/** The actor factory of each role. `sip-router` (the cluster front door) comes with clustering. */
const FACTORIES: Partial<Record<Role, (config: JitcastConfig) => ServiceSchema>> = {
  'content-storage': createContentStorageService,
  monitoring: createMonitoringService,
  event: createEventService,
  'archive-coordinator': createArchiveCoordinatorService,
  'encoder-port': createEncoderPortService,
  reservation: createReservationService,
  'attendee-access': createAttendeeAccessService,
  'voice-server': createVoiceServerService,
  gateway: createGatewayService,
};

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
    const factory = FACTORIES[role];
    if (factory) broker.createService(factory(config));
  }
  await broker.start();
  let stopping: Promise<void> | undefined;
  return {
    broker,
    config,
    stop: () => (stopping ??= broker.stop()),
  };
}
