/**
 * The in-process stand-ins the gateway specs put behind the real gateway and reservation
 * services: a content storage that holds no event yet, an event service over a Map, and the
 * broker that runs them.
 */
import type { Context, ServiceBroker, ServiceSchema } from 'moleculer';
import { createGatewayService } from '../../actors/gateway.service.ts';
import { createReservationService } from '../../actors/reservation.service.ts';
import type { JitcastConfig } from '../../cluster.config.ts';
import { createBroker } from '../../runtime/broker.ts';
import type { EventInfo } from '../../runtime/contracts.ts';
import { NotFoundError } from '../../runtime/errors.ts';

/** Content storage that accepts every event info and has none stored (so every drawn ID is free). */
export const fakeContentStorage: ServiceSchema = {
  name: 'content-storage',
  actions: {
    createEventInfo: () => ({ ok: true }),
    putEventInfo: () => ({ ok: true }),
    getEventInfo(ctx: Context<{ eventId: string }>) {
      throw new NotFoundError(`no event ${ctx.params.eventId}`);
    },
  },
};

/**
 * An event service over `events`: `register` stores, `get` answers the stored info plus what
 * `live(e)` adds (its streams and callers), `list` answers them all. `actions` add or replace actions.
 */
export function fakeEventService(
  events: Map<string, EventInfo>,
  live: (e: EventInfo) => Record<string, unknown>,
  actions: NonNullable<ServiceSchema['actions']> = {},
): ServiceSchema {
  return {
    name: 'event',
    actions: {
      register(ctx: Context<{ info: EventInfo }>) {
        events.set(ctx.params.info.eventId, ctx.params.info);
        return ctx.params.info;
      },
      get(ctx: Context<{ eventId: string }>) {
        const e = events.get(ctx.params.eventId);
        if (!e) throw new NotFoundError(`no event ${ctx.params.eventId}`);
        return { ...e, ...live(e) };
      },
      list: () => [...events.values()],
      ...actions,
    },
  };
}

/** Starts a broker with `fakes` and the real gateway and reservation services for `config`. */
export async function startGatewayBroker(config: JitcastConfig, fakes: ServiceSchema[]): Promise<ServiceBroker> {
  const broker = createBroker(config);
  for (const fake of fakes) broker.createService(fake);
  broker.createService(createGatewayService(config));
  broker.createService(createReservationService(config));
  await broker.start();
  return broker;
}
