/**
 * Events' live state in Redis (cluster mode): written by the node that holds an event on every
 * change, read by the node that takes it over when the holder dies. event-info.xml (content
 * storage) stays the durable source of truth; this is what it lacks: callers per channel, timer
 * deadlines, archive progress.
 *
 * Keys under `jitcast:<namespace>:`
 *   event:<eventId>               hash    rev, owner, state (StoredEvent JSON); archived and cancelled
 *                                         events expire after TERMINAL_TTL_S
 *   events:open                   set     event IDs that need a node to act (live, ended, archiving):
 *                                         what a node scans to take events over
 *   events:all                    zset    event ID → createdAt (ms), for `event.list`
 *   lock:event:<eventId>:<what>   string  holder node ID, PX: who fires the idle / settle timer or
 *                                         starts the archive
 *
 * Writes are compare-and-set on `rev`: a node holding an older state cannot overwrite a newer one.
 */
import { OPEN_STATUSES, type StoredEvent } from '../core/event-lifecycle.ts';
import { luaScript, type RedisConnection } from './redis.ts';

/** Archived and cancelled events leave Redis this long after their last change (storage keeps them). */
export const TERMINAL_TTL_S = 7 * 24 * 3600;

/** Outcome of a save: `ok`, or refused because the store holds `rev` (newer, or equal on a change). */
export type SaveResult = { ok: true } | { ok: false; rev: number };

/** Outcome of taking a lock: got it, or who holds it and for how much longer. */
export type LockResult = { ok: true } | { ok: false; holder: string; ttlMs: number };

/**
 * KEYS: event, open, all.  ARGV: rev, state JSON, owner, mode, eventId, open 1|0, createdAt ms, ttl s
 * → -2 when written, else the rev the store holds.
 */
const SAVE = luaScript(
  `
local cur = tonumber(redis.call('HGET', KEYS[1], 'rev') or '-1')
local rev = tonumber(ARGV[1])
if cur > rev or (cur == rev and ARGV[4] ~= 'sync') then return cur end
redis.call('HSET', KEYS[1], 'rev', ARGV[1], 'state', ARGV[2], 'owner', ARGV[3])
if tonumber(ARGV[8]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[8]) else redis.call('PERSIST', KEYS[1]) end
if ARGV[6] == '1' then redis.call('SADD', KEYS[2], ARGV[5]) else redis.call('SREM', KEYS[2], ARGV[5]) end
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[5])
return -2
`,
  3,
);

/** KEYS: lock.  ARGV: holder, ms.  → 1 when taken (free) or refreshed (ours). */
const LOCK = luaScript(
  `
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`,
  1,
);

/** KEYS: lock.  ARGV: dead holder, new holder, ms.  → 1 when the lock was free or still the dead holder's. */
const STEAL = luaScript(
  `
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] and cur ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`,
  1,
);

/** KEYS: lock.  ARGV: holder.  Deletes the lock only if this holder still has it. */
const UNLOCK = luaScript(
  `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`,
  1,
);

function parse(json: string | null | undefined): StoredEvent | undefined {
  if (!json) return undefined;
  try {
    const s = JSON.parse(json) as StoredEvent;
    return s && typeof s.rev === 'number' && s.state?.info?.eventId ? s : undefined;
  } catch {
    return undefined;
  }
}

/** The event actor's shared state over one Redis connection; locks are held in this node's name. */
export class RedisEventStore {
  constructor(
    private readonly redis: RedisConnection,
    private readonly nodeId: string,
  ) {}

  /** Whether Redis answers now; while it does not, every call fails at once. */
  get ready(): boolean {
    return this.redis.ready;
  }

  connect(): void {
    this.redis.connect();
  }

  onReady(fn: () => void): void {
    this.redis.onReady(fn);
  }

  close(): Promise<void> {
    return this.redis.close();
  }

  /** Writes `s` unless Redis holds a newer rev; `change` also refuses an equal rev (someone else's change), `sync` rewrites it. */
  async save(s: StoredEvent, mode: 'change' | 'sync'): Promise<SaveResult> {
    const info = s.state.info;
    const terminal = info.status === 'archived' || info.status === 'cancelled';
    const createdMs = Date.parse(info.createdAt);
    const r = await this.redis.run<number>(
      SAVE,
      [this.redis.key('event', info.eventId), this.redis.key('events', 'open'), this.redis.key('events', 'all')],
      [s.rev, JSON.stringify(s), s.owner, mode, info.eventId, OPEN_STATUSES.has(info.status) ? '1' : '0', Number.isFinite(createdMs) ? createdMs : 0, terminal ? TERMINAL_TTL_S : 0],
    );
    return r === -2 ? { ok: true } : { ok: false, rev: Number(r) };
  }

  async load(eventId: string): Promise<StoredEvent | undefined> {
    return parse(await this.redis.client.hget(this.redis.key('event', eventId), 'state'));
  }

  /** The stored states of the given events (those Redis has). */
  async loadMany(eventIds: string[]): Promise<Map<string, StoredEvent>> {
    const out = new Map<string, StoredEvent>();
    if (eventIds.length === 0) return out;
    const pipeline = this.redis.client.pipeline();
    for (const id of eventIds) pipeline.hget(this.redis.key('event', id), 'state');
    const results = (await pipeline.exec()) ?? [];
    results.forEach(([err, json], i) => {
      if (err) throw err;
      const s = parse(json as string | null);
      if (s) out.set(eventIds[i]!, s);
    });
    return out;
  }

  /** Events a node has to act on (live, ended, archiving). */
  async openIds(): Promise<string[]> {
    return (await this.redis.client.smembers(this.redis.key('events', 'open'))).sort();
  }

  /** Every event Redis knows, by creation time. */
  async allIds(): Promise<string[]> {
    return this.redis.client.zrange(this.redis.key('events', 'all'), 0, -1);
  }

  /** Takes (or refreshes) `lock:event:<name>` for `ttlMs`. */
  async lock(name: string, ttlMs: number): Promise<LockResult> {
    const key = this.redis.key('lock', 'event', name);
    if ((await this.redis.run<number>(LOCK, [key], [this.nodeId, ttlMs])) === 1) return { ok: true };
    const [holder, ttl] = await Promise.all([this.redis.client.get(key), this.redis.client.pttl(key)]);
    // Expired in between: the caller simply tries again.
    return { ok: false, holder: holder ?? '', ttlMs: Math.max(ttl, 0) };
  }

  /** Takes the lock from a holder that left the cluster (only if that holder still has it). */
  async steal(name: string, deadHolder: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.run<number>(STEAL, [this.redis.key('lock', 'event', name)], [deadHolder, this.nodeId, ttlMs])) === 1;
  }

  /** Releases the lock if this node holds it. */
  async unlock(name: string): Promise<void> {
    await this.redis.run(UNLOCK, [this.redis.key('lock', 'event', name)], [this.nodeId]);
  }
}
