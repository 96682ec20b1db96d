/**
 * `reservation` actor (DESIGN.md "web reservation"): validates a reservation, mints the event ID,
 * PIN and attendee/host URLs, makes the reservation durable in content storage and registers it with
 * the `event` actor, which queues the reporting-DB write of this and every later state (one writer
 * per node: two PGlite instances on one directory would corrupt it). Reads and state changes are
 * validated here (a mistyped event ID never reaches a lookup) and delegated to `event`.
 *
 * Accounts (issue 5 item 6): an event belongs to the account whose API key reserved it. Every read
 * and change passes the caller's account on to `event`, which answers 404 for another account's
 * event (codecs/api-key.ts mayAccess is the one rule); `list` keeps only the caller's events. The
 * operator's keys, and calls from inside the cluster, see every account's events.
 */
import { randomInt } from 'node:crypto';
import type { Context, ServiceSchema } from 'moleculer';
import {
  IsIn, IsInt, IsISO8601, IsOptional, IsString, Length, Matches, Max, Min, ValidateBy, validateSync, type ValidationError,
} from 'class-validator';
import type { JitcastConfig } from '../cluster.config.ts';
import { OPERATOR_ACCOUNT, mayAccess } from '../codecs/api-key.ts';
import { isValidEventId, makeEventId } from '../codecs/ids.ts';
import { pinFor } from '../codecs/pin.ts';
import { passwordProof, signToken } from '../codecs/token.ts';
import type { EventInfo, EventView, ReserveParams } from '../runtime/contracts.ts';
import { storageOf } from '../runtime/storage-client.ts';
import { NoCapacityError, ValidationFailedError, type FieldErrors } from '../runtime/errors.ts';

/** How far in the past `startsAt` may lie, for clocks that disagree a little. */
export const STARTS_AT_SKEW_MS = 5 * 60_000;

const DATE_TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/i;
const DATE_TIME_MSG = 'must be an ISO 8601 date-time with a time zone, e.g. 2030-01-31T18:00:00Z';

/** class-validator rule: a date-time no earlier than now minus the skew. */
function NotInPast(): PropertyDecorator {
  return ValidateBy({
    name: 'notInPast',
    validator: {
      validate: (v: unknown) => typeof v !== 'string' || !(Date.parse(v) < Date.now() - STARTS_AT_SKEW_MS),
      defaultMessage: () => 'must not lie in the past',
    },
  });
}

/** Body of `POST /api/events` (`reservation.create`). */
export class CreateReservationDto {
  static readonly FIELDS = ['title', 'startsAt', 'format', 'archiveDays', 'password'] as const;

  @IsString({ message: 'is required and must be a string' })
  @Length(1, 200, { message: 'must be 1-200 characters' })
  title!: string;

  @IsOptional()
  @IsString({ message: DATE_TIME_MSG })
  @Matches(DATE_TIME_RE, { message: DATE_TIME_MSG })
  @IsISO8601({ strict: true }, { message: DATE_TIME_MSG })
  @NotInPast()
  startsAt?: string;

  @IsOptional()
  @IsIn(['hls'], { message: "must be 'hls'" })
  format?: 'hls';

  @IsOptional()
  @IsInt({ message: 'must be a whole number of days' })
  @Min(1, { message: 'must be at least 1' })
  @Max(3650, { message: 'must be at most 3650' })
  archiveDays?: number;

  @IsOptional()
  @IsString({ message: 'must be a string' })
  @Length(4, 128, { message: 'must be 4-128 characters' })
  password?: string;
}

/** Body of `PATCH /api/events/:eventId` (`reservation.update`, without the event ID). */
export class UpdateReservationDto {
  static readonly FIELDS = ['title', 'startsAt', 'archiveDays'] as const;

  @IsOptional()
  @IsString({ message: 'must be a string' })
  @Length(1, 200, { message: 'must be 1-200 characters' })
  title?: string;

  @IsOptional()
  @IsString({ message: DATE_TIME_MSG })
  @Matches(DATE_TIME_RE, { message: DATE_TIME_MSG })
  @IsISO8601({ strict: true }, { message: DATE_TIME_MSG })
  @NotInPast()
  startsAt?: string;

  @IsOptional()
  @IsInt({ message: 'must be a whole number of days' })
  @Min(1, { message: 'must be at least 1' })
  @Max(3650, { message: 'must be at most 3650' })
  archiveDays?: number;
}

/** The fields of a `reservation.update` patch, as `event.update` takes them. */
export type ReservationPatch = Pick<UpdateReservationDto, 'title' | 'startsAt' | 'archiveDays'>;

function fieldErrors(errors: ValidationError[], allowed: string[]): FieldErrors {
  const fields: FieldErrors = {};
  for (const e of errors) {
    const c = e.constraints ?? {};
    fields[e.property] = c.whitelistValidation
      ? `is not a known field (allowed: ${allowed.join(', ')})`
      : Object.values(c).join('; ');
  }
  return fields;
}

/**
 * Validates `input` against a DTO class; unknown fields are refused. Returns the DTO with only the
 * given fields set; throws ValidationFailedError naming each bad field.
 */
export function validateDto<T extends object>(Dto: (new () => T) & { FIELDS: readonly string[] }, input: unknown, what: string): T {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new ValidationFailedError(`${what} must be an object`, { body: 'must be an object' });
  }
  const dto = new Dto();
  const allowed = [...Dto.FIELDS];
  for (const [k, v] of Object.entries(input)) {
    // defineProperty, not assignment: a "__proto__" key must become a refused field, not a prototype.
    Object.defineProperty(dto, k, { value: typeof v === 'string' && k === 'title' ? v.trim() : v, enumerable: true, writable: true, configurable: true });
  }
  const errors = validateSync(dto, { whitelist: true, forbidNonWhitelisted: true, validationError: { target: false, value: false } });
  if (errors.length > 0) {
    const fields = fieldErrors(errors, allowed);
    throw new ValidationFailedError(`invalid ${what}: ${Object.keys(fields).join(', ')}`, fields);
  }
  // Fields left undefined by the class definition are dropped, so a patch names only what it changes.
  for (const k of Object.keys(dto)) if ((dto as Record<string, unknown>)[k] === undefined) delete (dto as Record<string, unknown>)[k];
  return dto;
}

/** Throws a 400 naming `eventId` unless it is 8 digits with a valid Luhn check digit. */
export function requireEventId(eventId: unknown): string {
  if (!isValidEventId(eventId)) {
    throw new ValidationFailedError(`invalid event ID ${JSON.stringify(eventId ?? null)}`, { eventId: 'must be 8 digits ending in a valid check digit' });
  }
  return eventId;
}

/** What the gateway puts in `ctx.meta` for an API call (from the key that authenticated it). */
export interface ApiMeta {
  /** The key's ID (`op-…` for a key from config), for logs. */
  apiKey?: string;
  /** The account the key belongs to; absent on calls from inside the cluster. */
  account?: string;
}

/**
 * The account whose view a call gets: the API key's account, or undefined for a call from inside
 * the cluster (no key), which sees every event, as the operator does (codecs/api-key.ts mayAccess).
 */
export function viewerOf(ctx: Context<unknown, ApiMeta>): string | undefined {
  const a = ctx.meta?.account;
  return typeof a === 'string' ? a : undefined;
}

/**
 * `event.*` parameters naming the caller's account, so the event actor refuses another account's
 * event; none for the operator and calls from inside the cluster, who may act on every event.
 */
function asViewer(ctx: Context<unknown, ApiMeta>): { account?: string } {
  const account = viewerOf(ctx);
  return account === undefined || account === OPERATOR_ACCOUNT ? {} : { account };
}

/**
 * The event, if the caller may see it; otherwise the 404 an unknown event gets (another account
 * learns nothing, not even that the ID is taken). Every `/api/events/:eventId/…` read that is not
 * one of this actor's own actions (the usage report) goes through here.
 */
export async function requireOwnedEvent(ctx: Context<unknown, ApiMeta>, eventId: unknown): Promise<EventView> {
  const id = requireEventId(eventId);
  return (await ctx.call('event.get', { eventId: id, ...asViewer(ctx) })) as EventView;
}

function isConflict(err: unknown): boolean {
  return (err as { code?: number })?.code === 409;
}

function withoutEventId(params: Record<string, unknown>): Record<string, unknown> {
  const { eventId: _eventId, ...rest } = params;
  return rest;
}

/** The `reservation` service. */
export function createReservationService(config: JitcastConfig): ServiceSchema {
  /**
   * Draws seven random digits (→ an event ID with its check digit) and stores the event under it,
   * durably: content storage claims the ID atomically and answers 409 when it is taken, and then
   * another is drawn. One write, no lookup first (that cost a read and a NotFound per reservation).
   */
  async function storeNew(ctx: Context, build: (eventId: string) => EventInfo): Promise<EventInfo> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const info = build(makeEventId(String(randomInt(0, 10_000_000)).padStart(7, '0')));
      try {
        await storageOf(ctx.broker).createEventInfo(info);
        return info;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    }
    throw new NoCapacityError('could not find a free event ID after 10 tries');
  }

  return {
    name: 'reservation',

    actions: {
      create: {
        async handler(ctx: Context<ReserveParams, ApiMeta>): Promise<EventView> {
          const dto = validateDto(CreateReservationDto, ctx.params ?? {}, 'reservation');
          // The event belongs to the account that reserved it; calls from inside the cluster reserve as the operator.
          const account = viewerOf(ctx) ?? OPERATOR_ACCOUNT;
          const now = new Date().toISOString();
          // Durable first: once event-info.xml is stored the reservation survives any node.
          const info = await storeNew(ctx, (eventId) => {
            const attendeeToken = signToken(config.secret, {
              e: eventId,
              r: 'attendee',
              ...(dto.password !== undefined ? { p: passwordProof(config.secret, eventId, dto.password) } : {}),
            });
            const hostToken = signToken(config.secret, { e: eventId, r: 'host' });
            return {
              eventId,
              title: dto.title,
              format: dto.format ?? 'hls',
              ...(dto.startsAt !== undefined ? { startsAt: new Date(dto.startsAt).toISOString() } : {}),
              createdAt: now,
              updatedAt: now,
              archiveDays: dto.archiveDays ?? 30,
              hasPassword: dto.password !== undefined,
              attendeeUrl: `${config.publicUrl}/e/${attendeeToken}`,
              hostUrl: `${config.publicUrl}/e/${hostToken}`,
              status: 'reserved',
              account,
            };
          });
          const eventId = info.eventId;
          const registered = (await ctx.call('event.register', { info })) as EventInfo;
          this.logger.info(`reserved [event:${eventId} account:${account} key:${ctx.meta.apiKey ?? '-'}]`);
          return { ...registered, pin: pinFor(config.secret, eventId), streams: [], callers: 0 };
        },
      },

      get: {
        async handler(ctx: Context<{ eventId: string }, ApiMeta>): Promise<EventView> {
          const view = await requireOwnedEvent(ctx, ctx.params?.eventId);
          return { ...view, pin: pinFor(config.secret, view.eventId) };
        },
      },

      list: {
        async handler(ctx: Context<unknown, ApiMeta>): Promise<EventView[]> {
          const viewer = viewerOf(ctx);
          return ((await ctx.call('event.list', {})) as EventView[]).filter((v) => mayAccess(viewer, v));
        },
      },

      update: {
        async handler(ctx: Context<{ eventId: string } & ReservationPatch, ApiMeta>): Promise<EventInfo> {
          const params = (ctx.params ?? {}) as Record<string, unknown>;
          const eventId = requireEventId(params.eventId);
          const patch: ReservationPatch = validateDto(UpdateReservationDto, withoutEventId(params), 'update');
          if (Object.keys(patch).length === 0) {
            throw new ValidationFailedError('nothing to update: give title, startsAt or archiveDays', { body: 'must name at least one of title, startsAt, archiveDays' });
          }
          if (patch.startsAt !== undefined) patch.startsAt = new Date(patch.startsAt).toISOString();
          return (await ctx.call('event.update', { eventId, patch: { ...patch }, ...asViewer(ctx) })) as EventInfo;
        },
      },

      cancel: {
        async handler(ctx: Context<{ eventId: string }, ApiMeta>): Promise<EventInfo> {
          const eventId = requireEventId(ctx.params?.eventId);
          return (await ctx.call('event.cancel', { eventId, ...asViewer(ctx) })) as EventInfo;
        },
      },

      end: {
        async handler(ctx: Context<{ eventId: string }, ApiMeta>): Promise<EventInfo> {
          const eventId = requireEventId(ctx.params?.eventId);
          return (await ctx.call('event.end', { eventId, reason: 'api', ...asViewer(ctx) })) as EventInfo;
        },
      },

      /** Clears an event's archive error flag so the archive leader builds it again (409 unless archive-error). */
      retryArchive: {
        async handler(ctx: Context<{ eventId: string }, ApiMeta>): Promise<EventInfo> {
          const eventId = requireEventId(ctx.params?.eventId);
          return (await ctx.call('event.retryArchive', { eventId, ...asViewer(ctx) })) as EventInfo;
        },
      },
    },
  };
}
