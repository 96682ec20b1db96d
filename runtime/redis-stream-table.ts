/**
 * The monitoring tables in Redis (cluster mode, DESIGN.md "Modes"), shared by every monitoring actor
 * of the cluster. Every encoder broadcast reaches each of them, so every write here is idempotent:
 * the same push or stop applied twice, by two nodes, in either order, leaves the same keys.
 *
 * Keys under `jitcast:<namespace>:`
 *   stream:<streamId>             string  the StreamDataset JSON, PX = heartbeat timeout: a stream
 *                                         whose pushes stop is gone when its key expires
 *   streams:active                zset    streamId → Redis time (ms) of its last push; the index of
 *                                         the active table, pruned of expired members on read
 *   streams:active:<eventId>      zset    the same, for one event
 *   history:<eventId>             hash    streamId → StreamRecord JSON: which stream ran where, from
 *                                         when (first dataset) to when (stop); kept HISTORY_TTL_S
 *   history:<eventId>:seen        hash    streamId → lastSeenAt (ISO) of its last push, so a stream
 *                                         that died without a stop still shows where it ended
 *
 * Times that decide expiry are Redis's own (TTL, `TIME`), never a node's clock. A MemoryStreamTable
 * mirrors every write: while Redis is unreachable the actor answers from it, and when Redis returns
 * the mirror's history is written back (datasets come back with the next pushes).
 */
import type { StreamDataset, StreamRecord } from './contracts.ts';
import { byStart, MemoryStreamTable, recordOf, type PushOutcome, type StreamTable } from '../core/stream-table.ts';
import { luaScript, type RedisConnection, type RedisLogger } from './redis.ts';
import { errorMessage } from './errors.ts';

/** How long an event's stream history stays in Redis after its last write: the default retention. */
export const HISTORY_TTL_S = 30 * 24 * 3600;
/** The mirror forgets events whose streams all ended this long ago (Redis keeps them). */
const MIRROR_KEEP_MS = 3600_000;
/** History records written back per pipeline after Redis returns. */
const RESYNC_BATCH = 200;

/**
 * KEYS: stream, active, active-of-event, history, seen
 * ARGV: streamId, dataset JSON, ttl ms, record JSON, lastSeenAt, history ttl s
 * → 'up' | 'seen' | 'ignored'
 */
const PUSH = luaScript(
  `
local rec = redis.call('HGET', KEYS[4], ARGV[1])
if rec then
  local ok, r = pcall(cjson.decode, rec)
  if ok and type(r) == 'table' and r.endedAt and r.endedAt ~= cjson.null then return 'ignored' end
else
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
local alive = redis.call('EXISTS', KEYS[1]) == 1
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('PEXPIRE', KEYS[3], ttl * 4)
local seen = redis.call('HGET', KEYS[5], ARGV[1])
if ARGV[5] ~= '' and ((not seen) or seen < ARGV[5]) then redis.call('HSET', KEYS[5], ARGV[1], ARGV[5]) end
redis.call('EXPIRE', KEYS[4], ARGV[6])
redis.call('EXPIRE', KEYS[5], ARGV[6])
if alive then return 'seen' end
return 'up'
`,
  5,
);

/**
 * KEYS: stream, active, active-of-event, history, seen
 * ARGV: streamId, record JSON, history ttl s
 * → the dataset JSON the stream had, or false
 */
const STOP = luaScript(
  `
local rec = cjson.decode(ARGV[2])
local old = redis.call('HGET', KEYS[4], ARGV[1])
if old then
  local ok, o = pcall(cjson.decode, old)
  -- The first dataset's startedAt stays: it is when listeners first had the stream.
  if ok and type(o) == 'table' and type(o.startedAt) == 'string' then rec.startedAt = o.startedAt end
end
redis.call('HSET', KEYS[4], ARGV[1], cjson.encode(rec))
local ds = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[4], ARGV[3])
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('EXPIRE', KEYS[5], ARGV[3]) end
return ds
`,
  5,
);

/**
 * KEYS: an active zset.  ARGV: ttl ms.
 * Drops members not pushed within the TTL (by Redis time) and returns the rest.
 */
const ACTIVE = luaScript(
  `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])))
return redis.call('ZRANGE', KEYS[1], 0, -1)
`,
  1,
);

/**
 * Resync of one mirrored record. KEYS: history, seen.  ARGV: streamId, record JSON, lastSeenAt, ttl s.
 * Fills what Redis lacks; a stop already recorded there wins over an open record from memory.
 */
const RESYNC = luaScript(
  `
local old = redis.call('HGET', KEYS[1], ARGV[1])
local rec = cjson.decode(ARGV[2])
if not old then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
elseif rec.endedAt and rec.endedAt ~= cjson.null then
  local ok, o = pcall(cjson.decode, old)
  if ok and type(o) == 'table' and not (o.endedAt and o.endedAt ~= cjson.null) then
    if type(o.startedAt) == 'string' then rec.startedAt = o.startedAt end
    redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
  end
end
local seen = redis.call('HGET', KEYS[2], ARGV[1])
if ARGV[3] ~= '' and ((not seen) or seen < ARGV[3]) then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
`,
  2,
);


function parse<T>(json: string | null | undefined): T | undefined {
  if (!json) return undefined;
  try {
    return JSON.parse(json) as T;
  } catch {
    return undefined;
  }
}

/** The record without lastSeenAt (kept in its own hash so a push never rewrites the record). */
function bareRecord(r: StreamRecord): Omit<StreamRecord, 'lastSeenAt'> {
  const { lastSeenAt: _seen, ...rest } = r;
  return rest;
}

/** StreamTable over Redis keys with TTLs, mirrored in memory for when Redis is away. */
export class RedisStreamTable implements StreamTable {
  /** What this node has seen itself; answers while Redis is unreachable. */
  readonly mirror: MemoryStreamTable;
  private failures = 0;

  constructor(
    private readonly redis: RedisConnection,
    private readonly timeoutMs: number,
    private readonly logger: RedisLogger,
  ) {
    this.mirror = new MemoryStreamTable(timeoutMs);
  }

  private keys(eventId: string, streamId: string): string[] {
    const r = this.redis;
    return [r.key('stream', streamId), r.key('streams', 'active'), r.key('streams', 'active', eventId), r.key('history', eventId), r.key('history', eventId, 'seen')];
  }

  /** Logs a failed Redis operation: the first of a run at warn, the rest at debug (the connection logs the outage itself). */
  private failed(op: string, err: unknown): void {
    if (this.failures++ === 0) this.logger.warn(`monitoring table: redis ${op} failed, answering from memory [${errorMessage(err)}]`);
    else this.logger.debug(`monitoring table: redis ${op} failed [${errorMessage(err)}]`);
  }

  private succeeded(): void {
    this.failures = 0;
  }

  async push(dataset: StreamDataset, nowMs: number): Promise<PushOutcome> {
    // The mirror and the Redis command are both issued before any await, so pushes and stops reach
    // Redis in the order they arrived here.
    const local = this.mirror.pushNow(dataset, nowMs);
    if (!this.redis.ready) return local;
    try {
      const outcome = await this.redis.run<PushOutcome>(PUSH, this.keys(dataset.eventId, dataset.streamId), [
        dataset.streamId,
        JSON.stringify(dataset),
        this.timeoutMs,
        JSON.stringify(bareRecord(recordOf(dataset))),
        dataset.lastSeenAt ?? '',
        HISTORY_TTL_S,
      ]);
      this.succeeded();
      return outcome;
    } catch (err) {
      this.failed('push', err);
      return local;
    }
  }

  async stop(record: StreamRecord): Promise<StreamDataset | undefined> {
    const local = this.mirror.stopNow(record);
    if (!this.redis.ready) return local;
    try {
      const json = await this.redis.run<string | null>(STOP, this.keys(record.eventId, record.streamId), [record.streamId, JSON.stringify(bareRecord(record)), HISTORY_TTL_S]);
      this.succeeded();
      return parse<StreamDataset>(json) ?? local;
    } catch (err) {
      this.failed('stop', err);
      return local;
    }
  }

  async active(nowMs: number, eventId?: string): Promise<StreamDataset[]> {
    if (!this.redis.ready) return this.mirror.activeNow(nowMs, eventId);
    try {
      const index = eventId === undefined ? this.redis.key('streams', 'active') : this.redis.key('streams', 'active', eventId);
      const ids = await this.redis.run<string[]>(ACTIVE, [index], [this.timeoutMs]);
      if (ids.length === 0) {
        this.succeeded();
        return [];
      }
      // The dataset key's TTL is the truth: a member whose key expired is no longer active.
      const values = await this.redis.client.mget(ids.map((id) => this.redis.key('stream', id)));
      this.succeeded();
      const out: StreamDataset[] = [];
      for (const v of values) {
        const d = parse<StreamDataset>(v);
        if (d) out.push(d);
      }
      return out.sort(byStart);
    } catch (err) {
      this.failed('active', err);
      return this.mirror.activeNow(nowMs, eventId);
    }
  }

  async expire(nowMs: number): Promise<StreamDataset[]> {
    // Redis expires datasets by itself; the mirror reports what this node saw go quiet (for the log).
    const gone = this.mirror.expireNow(nowMs);
    this.mirror.forgetBefore(new Date(nowMs - MIRROR_KEEP_MS).toISOString());
    if (this.redis.ready) {
      try {
        await this.redis.run(ACTIVE, [this.redis.key('streams', 'active')], [this.timeoutMs]);
        this.succeeded();
      } catch (err) {
        this.failed('prune', err);
      }
    }
    return gone;
  }

  async history(eventId: string): Promise<StreamRecord[]> {
    if (!this.redis.ready) return this.mirror.historyNow(eventId);
    try {
      const [records, seen] = await Promise.all([this.redis.client.hgetall(this.redis.key('history', eventId)), this.redis.client.hgetall(this.redis.key('history', eventId, 'seen'))]);
      this.succeeded();
      const out: StreamRecord[] = [];
      for (const [streamId, json] of Object.entries(records)) {
        const r = parse<StreamRecord>(json);
        if (!r) continue;
        const last = seen[streamId];
        out.push(last ? { ...r, lastSeenAt: last } : r);
      }
      // What only this node saw (while Redis was away, not resynced yet) still counts: a record Redis
      // lacks, or a stop it missed.
      const byId = new Map(out.map((r) => [r.streamId, r]));
      for (const m of this.mirror.historyNow(eventId)) {
        const r = byId.get(m.streamId);
        if (!r) byId.set(m.streamId, m);
        else if (m.endedAt && !r.endedAt) byId.set(m.streamId, { ...m, startedAt: r.startedAt });
      }
      return [...byId.values()].sort(byStart);
    } catch (err) {
      this.failed('history', err);
      return this.mirror.historyNow(eventId);
    }
  }

  async isAlive(streamId: string, nowMs: number): Promise<boolean> {
    if (!this.redis.ready) return this.mirror.isAliveNow(streamId, nowMs);
    try {
      const n = await this.redis.client.exists(this.redis.key('stream', streamId));
      this.succeeded();
      return n === 1;
    } catch (err) {
      this.failed('isAlive', err);
      return this.mirror.isAliveNow(streamId, nowMs);
    }
  }

  /**
   * Writes the mirror's history back into Redis (after Redis returned, possibly empty): records Redis
   * lacks are added, stops it missed are completed. Returns how many records were written.
   */
  async resync(): Promise<number> {
    const records = this.mirror.records();
    if (records.length === 0 || !this.redis.ready) return 0;
    await this.redis.client.script('LOAD', RESYNC.lua);
    // In batches, so no command waits behind thousands of others past the command timeout.
    for (let i = 0; i < records.length; i += RESYNC_BATCH) {
      const batch = records.slice(i, i + RESYNC_BATCH);
      const pipeline = this.redis.client.pipeline();
      for (const r of batch) {
        const keys = [this.redis.key('history', r.eventId), this.redis.key('history', r.eventId, 'seen')];
        pipeline.evalsha(RESYNC.sha, RESYNC.keys, ...keys, r.streamId, JSON.stringify(bareRecord(r)), r.lastSeenAt ?? '', HISTORY_TTL_S);
      }
      const failed = ((await pipeline.exec()) ?? []).filter(([err]) => err);
      if (failed.length > 0) throw new Error(`${failed.length} of ${records.length} history records not resynced: ${errorMessage(failed[0]![0])}`);
    }
    return records.length;
  }
}
