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
];
