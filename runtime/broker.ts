/**
 * Creates the Moleculer broker of one node from its config: in-process in embedded mode, NATS in
 * cluster mode; 1 s heartbeat / 3 s timeout (FIELD-NOTES: the 10/30 s default is far too slow);
 * jitcast errors survive the wire through JitcastRegenerator.
 */
import { ServiceBroker, type BrokerOptions } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import { JitcastRegenerator } from './errors.ts';
import { recentErrorsLogger } from './recent-errors.ts';

/** Broker options for a node; exported so specs can build brokers the same way. */
export function brokerOptions(config: JitcastConfig, extra: Partial<BrokerOptions> = {}): BrokerOptions {
  return {
    nodeID: config.nodeId,
    namespace: config.namespace,
    transporter: config.natsUrl ? { type: 'NATS', options: { url: config.natsUrl } } : undefined,
    heartbeatInterval: config.heartbeatS,
    heartbeatTimeout: config.heartbeatTimeoutS,
    errorRegenerator: new JitcastRegenerator(),
    // Calls aimed at one actor must not be retried elsewhere (FIELD-NOTES); actors retry on their own terms.
    retryPolicy: { enabled: false },
    // The CLI owns SIGINT/SIGTERM (one graceful stop); Moleculer's own handlers would stop the broker twice.
    skipProcessEventRegistration: true,
    requestTimeout: 10_000,
    logLevel: config.logLevel,
    logger: [
      { type: 'Console', options: { formatter: 'short', colors: process.stdout.isTTY, moduleColors: false, autoPadding: false } },
      // Warn and worse also go to the event manager's "recent errors" (runtime/recent-errors.ts).
      recentErrorsLogger(),
    ],
    metadata: { dataCenter: config.dataCenter, roles: config.roles },
    ...extra,
  };
}

/** A broker for this node (not started). */
export function createBroker(config: JitcastConfig, extra: Partial<BrokerOptions> = {}): ServiceBroker {
  return new ServiceBroker(brokerOptions(config, extra));
}
