/**
 * Schema of the reporting database as numbered migrations, applied in order at start-up by
 * `openDb` (runtime/db.ts) and recorded in `schema_migrations`. Never edit a released entry: add one.
 */

/** One schema change; `version` numbers are unique and increasing. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Every migration, oldest first. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'events',
    // One row per reservation with its current state (DESIGN.md "Reporting database"). `version`
    // orders writes so an older state never overwrites a newer one (runtime/reporting.ts).
    sql: `
      CREATE TABLE events (
        event_id      text PRIMARY KEY,
        title         text NOT NULL,
        format        text NOT NULL,
        status        text NOT NULL,
        starts_at     timestamptz,
        created_at    timestamptz NOT NULL,
        updated_at    timestamptz NOT NULL,
        archive_days  integer NOT NULL,
        has_password  boolean NOT NULL DEFAULT false,
        live_at       timestamptz,
        ended_at      timestamptz,
        archive       jsonb,
        archive_error text,
        version       bigint NOT NULL
      );
      CREATE INDEX events_status_idx ON events (status);
      CREATE INDEX events_created_at_idx ON events (created_at);
    `,
  },
  {
    version: 2,
    name: 'accounts',
    // Customer accounts and their API keys (issue 5 item 6), mirrored from the key registry
    // (runtime/api-keys.ts), which holds the truth; never the key or its hash. Every event belongs
    // to the account that reserved it; rows written before accounts existed are the operator's.
    sql: `
      CREATE TABLE accounts (
        account     text PRIMARY KEY,
        created_at  timestamptz NOT NULL
      );
      CREATE TABLE api_keys (
        key_id      text PRIMARY KEY,
        account     text NOT NULL REFERENCES accounts (account),
        label       text,
        created_at  timestamptz NOT NULL,
        revoked_at  timestamptz
      );
      CREATE INDEX api_keys_account_idx ON api_keys (account);
      ALTER TABLE events ADD COLUMN account text NOT NULL DEFAULT 'operator';
      CREATE INDEX events_account_idx ON events (account);
    `,
  },
  {
    version: 3,
    name: 'event_usage',
    // Usage report of each event (issue 5 item 4; core/usage.ts, runtime/usage-db.ts): refreshed
    // while live, written again when the event ends and is archived. Counters only grow, so an
    // upsert keeps the larger of the stored and the new value (GREATEST), whichever node writes.
    sql: `
      CREATE TABLE event_usage (
        event_id           text PRIMARY KEY,
        peak_listeners     integer NOT NULL,
        peak_at            timestamptz,
        total_listeners    integer NOT NULL,
        listening_seconds  double precision NOT NULL,
        segment_requests   bigint NOT NULL,
        playlist_requests  bigint NOT NULL,
        call_seconds       double precision NOT NULL,
        calls              integer NOT NULL,
        streams            integer NOT NULL,
        stream_seconds     double precision NOT NULL,
        fragments          integer NOT NULL,
        status             text,
        final              boolean NOT NULL DEFAULT false,
        updated_at         timestamptz NOT NULL
      );
    `,
  },
];
