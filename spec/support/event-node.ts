/**
 * One event-plane node as its own process, for specs that SIGKILL it: content-storage, monitoring,
 * event and archive-coordinator on a broker configured by `JITCAST_SPEC_NODE` (JSON of config flags,
 * as `testConfig()` takes them). Prints `ready <nodeID>` once started; SIGTERM stops it cleanly.
 *
 *   node --import tsx spec/support/event-node.ts
 */
import { createArchiveCoordinatorService } from '../../actors/archive-coordinator.service.ts';
import { createContentStorageService } from '../../actors/content-storage.service.ts';
import { createEventService } from '../../actors/event.service.ts';
import { createMonitoringService } from '../../actors/monitoring.service.ts';
import { createBroker } from '../../runtime/broker.ts';
import { testConfig } from './config.ts';
import { FakeReporting } from './event-plane.ts';

const config = testConfig(JSON.parse(process.env.JITCAST_SPEC_NODE ?? '{}'));
const broker = createBroker(config);
broker.createService(createContentStorageService(config));
broker.createService(createMonitoringService(config));
broker.createService(createEventService(config, { reporting: () => new FakeReporting() }));
broker.createService(createArchiveCoordinatorService(config));
await broker.start();
process.stdout.write(`ready ${broker.nodeID}\n`);
process.once('SIGTERM', () => {
  broker.stop().finally(() => process.exit(0));
});
