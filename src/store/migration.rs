//! Schema migrations, applied at start-up and by `paygate migrate`.
//!
//! Written as plain SQL per backend: the event log's sequence must be a 64-bit counter that is
//! never reused (SQLite `INTEGER PRIMARY KEY AUTOINCREMENT`, PostgreSQL `BIGSERIAL`), which the
//! portable schema builder does not express for both.

use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(Initial),
            Box::new(WEBHOOK_SECRETS),
            Box::new(CUSTOMERS),
            Box::new(POLL_SCHEDULE),
            Box::new(WRITE_LOCK),
            Box::new(SEND_LEASES),
            Box::new(AUDIT_AND_RETENTION),
            Box::new(UNUSED_INDEX),
            Box::new(PARTIAL_INDEXES),
            Box::new(BYTE_ORDER_KEYS),
        ]
    }
}

struct Initial;

impl MigrationName for Initial {
    fn name(&self) -> &str {
        "m0001_initial"
    }
}

const COMMON: &[&str] = &[
    "CREATE TABLE payments (
        reference VARCHAR(50) PRIMARY KEY,
        psp_reference VARCHAR(64) NOT NULL,
        state VARCHAR(16) NOT NULL,
        currency VARCHAR(3) NOT NULL,
        amount BIGINT NOT NULL,
        authorized BIGINT NOT NULL,
        captured BIGINT NOT NULL,
        refunded BIGINT NOT NULL,
        cancelled BIGINT NOT NULL,
        user_flow VARCHAR(16) NOT NULL,
        redirect_url TEXT,
        customer_key VARCHAR(128),
        phone_number VARCHAR(15),
        profile_sub VARCHAR(128),
        metadata TEXT NOT NULL,
        confirmed BOOLEAN NOT NULL,
        failure TEXT,
        create_time_ms BIGINT NOT NULL,
        update_time_ms BIGINT NOT NULL
    )",
    "CREATE INDEX payments_pending ON payments (state, update_time_ms)",
    "CREATE INDEX payments_customer ON payments (customer_key)",
    "CREATE UNIQUE INDEX operations_key ON operations (kind, scope, idempotency_key)",
    "CREATE INDEX operations_pending ON operations (status, updated_ms)",
    "CREATE INDEX events_reference ON events (reference, sequence)",
];

const SQLITE: &[&str] = &[
    "CREATE TABLE operations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind VARCHAR(16) NOT NULL,
        scope VARCHAR(50) NOT NULL,
        reference VARCHAR(50) NOT NULL,
        idempotency_key VARCHAR(50) NOT NULL,
        fingerprint VARCHAR(64) NOT NULL,
        request TEXT NOT NULL,
        status VARCHAR(16) NOT NULL,
        outcome TEXT,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL
    )",
    "CREATE TABLE events (
        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
        dedupe_key VARCHAR(255) NOT NULL UNIQUE,
        reference VARCHAR(64) NOT NULL,
        psp_reference VARCHAR(64) NOT NULL,
        name VARCHAR(16) NOT NULL,
        currency VARCHAR(3) NOT NULL,
        amount BIGINT NOT NULL,
        timestamp_ms BIGINT NOT NULL,
        idempotency_key VARCHAR(50),
        success BOOLEAN NOT NULL,
        source VARCHAR(16) NOT NULL,
        payment TEXT,
        recorded_ms BIGINT NOT NULL
    )",
];

const POSTGRES: &[&str] = &[
    "CREATE TABLE operations (
        id BIGSERIAL PRIMARY KEY,
        kind VARCHAR(16) NOT NULL,
        scope VARCHAR(50) NOT NULL,
        reference VARCHAR(50) NOT NULL,
        idempotency_key VARCHAR(50) NOT NULL,
        fingerprint VARCHAR(64) NOT NULL,
        request TEXT NOT NULL,
        status VARCHAR(16) NOT NULL,
        outcome TEXT,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL
    )",
    "CREATE TABLE events (
        sequence BIGSERIAL PRIMARY KEY,
        dedupe_key VARCHAR(255) NOT NULL UNIQUE,
        reference VARCHAR(64) NOT NULL,
        psp_reference VARCHAR(64) NOT NULL,
        name VARCHAR(16) NOT NULL,
        currency VARCHAR(3) NOT NULL,
        amount BIGINT NOT NULL,
        timestamp_ms BIGINT NOT NULL,
        idempotency_key VARCHAR(50),
        success BOOLEAN NOT NULL,
        source VARCHAR(16) NOT NULL,
        payment TEXT,
        recorded_ms BIGINT NOT NULL
    )",
];

#[async_trait::async_trait]
impl MigrationTrait for Initial {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let specific = match manager.get_database_backend() {
            DbBackend::Postgres => POSTGRES,
            _ => SQLITE,
        };
        for sql in specific.iter().chain(COMMON) {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

/// A migration of plain SQL statements, the same on both backends.
struct Sql {
    name: &'static str,
    statements: &'static [&'static str],
}

impl MigrationName for Sql {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Sql {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One transaction, so one connection: on SQLite each statement could otherwise run on
        // another pooled connection whose schema is older than the previous statement's (a
        // CREATE INDEX after a DROP INDEX of the same name fails there with "already exists").
        let txn = manager.get_connection().begin().await?;
        for sql in self.statements {
            txn.execute_unprepared(sql).await?;
        }
        txn.commit().await
    }
}

/// A `Sql` migration that PostgreSQL runs and SQLite records as applied without running.
struct PostgresOnly(Sql);

impl MigrationName for PostgresOnly {
    fn name(&self) -> &str {
        self.0.name
    }
}

#[async_trait::async_trait]
impl MigrationTrait for PostgresOnly {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => self.0.up(manager).await,
            _ => Ok(()),
        }
    }
}

/// Webhook registrations paygate holds the secret for, shared by every replica.
const WEBHOOK_SECRETS: Sql = Sql {
    name: "m0002_webhook_secrets",
    statements: &["CREATE TABLE webhook_secrets (
        id VARCHAR(64) PRIMARY KEY,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_ms BIGINT NOT NULL
    )"],
};

/// Known customers (the shared phone number) and the profile-sharing status of payments.
const CUSTOMERS: Sql = Sql {
    name: "m0003_customers",
    statements: &[
        "CREATE TABLE customers (
            customer_key VARCHAR(128) PRIMARY KEY,
            phone_number VARCHAR(15) NOT NULL,
            profile_sub VARCHAR(128),
            shared_time_ms BIGINT NOT NULL
        )",
        // NULL: no profile asked for; pending: fetch after AUTHORIZED; shared; failed (see failure).
        "ALTER TABLE payments ADD COLUMN profile_status VARCHAR(16)",
        "CREATE INDEX payments_profile ON payments (profile_status, state)",
    ],
};

/// When the reconciler next looks at a payment that is not final.
const POLL_SCHEDULE: Sql = Sql {
    name: "m0004_poll_schedule",
    statements: &[
        "ALTER TABLE payments ADD COLUMN next_poll_ms BIGINT NOT NULL DEFAULT 0",
        "CREATE INDEX payments_poll ON payments (state, next_poll_ms)",
    ],
};

/// SQLite only in use: a one-row table every write transaction updates first, so the
/// transaction takes SQLite's write lock at its start and waits (busy_timeout) for another
/// writer, instead of failing when it would upgrade from reading to writing.
const WRITE_LOCK: Sql = Sql {
    name: "m0005_write_lock",
    statements: &[
        "CREATE TABLE write_lock (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)",
        "INSERT INTO write_lock (id, n) VALUES (1, 0)",
    ],
};

/// One sender per operation: a send holds a lease (claimed by compare-and-set) that outlasts
/// the Vipps call's whole budget, and re-sends wait for `next_send_ms` (growing backoff).
const SEND_LEASES: Sql = Sql {
    name: "m0006_send_leases",
    statements: &[
        "ALTER TABLE operations ADD COLUMN lease_until_ms BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE operations ADD COLUMN next_send_ms BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE operations ADD COLUMN sends INTEGER NOT NULL DEFAULT 0",
    ],
};

/// Who asked for each journalled operation (the audit trail), and the retention horizon: every
/// event up to `log_horizon.sequence` may have been deleted, so a cursor below it cannot resume.
const AUDIT_AND_RETENTION: Sql = Sql {
    name: "m0007_audit_and_retention",
    statements: &[
        "ALTER TABLE operations ADD COLUMN caller VARCHAR(128) NOT NULL DEFAULT ''",
        "CREATE TABLE log_horizon (id INTEGER PRIMARY KEY, sequence BIGINT NOT NULL)",
        "INSERT INTO log_horizon (id, sequence) VALUES (1, 0)",
        "CREATE INDEX events_recorded ON events (recorded_ms)",
    ],
};

/// `payments_pending (state, update_time_ms)` served no query (the reconciler reads
/// `payments_poll`), yet every payment insert and update rewrote an entry in it: one more page
/// in the WAL, and its sync, per create and per webhook for a known payment.
const UNUSED_INDEX: Sql = Sql {
    name: "m0008_drop_payments_pending",
    statements: &["DROP INDEX IF EXISTS payments_pending"],
};

/// Every index entry a commit writes costs a WAL page and its share of the sync (a create's two
/// commits wrote 13 pages each on average; the sync takes about 25 µs more per page). These
/// indexes serve queries for a few rows (customers with a key, profiles still to fetch, journal
/// entries still pending, events of unknown payments), so they now hold only those rows: a
/// create without a customer key writes none of the first two, settling an operation removes
/// its entry instead of moving it, and an event of a known payment writes no retention entry
/// (retention finds old events by sequence, `retention::old_events`).
const PARTIAL_INDEXES: Sql = Sql {
    name: "m0009_partial_indexes",
    statements: &[
        "DROP INDEX IF EXISTS payments_customer",
        "CREATE INDEX payments_customer ON payments (customer_key) WHERE customer_key IS NOT NULL",
        "DROP INDEX IF EXISTS payments_profile",
        "CREATE INDEX payments_profile_pending ON payments (state) WHERE profile_status = 'pending'",
        "DROP INDEX IF EXISTS operations_pending",
        "CREATE INDEX operations_pending ON operations (updated_ms) WHERE status = 'pending'",
        "DROP INDEX IF EXISTS events_recorded",
        "CREATE INDEX events_unknown ON events (recorded_ms) WHERE payment IS NULL",
    ],
};

/// PostgreSQL compares the key columns byte by byte (`COLLATE "C"`) instead of by the database's
/// locale. Keys (references, dedupe keys, idempotency keys, customer keys) are only ever compared
/// for equality, which is byte equality under any deterministic collation, and no query orders
/// by them, so nothing reads differently; but every b-tree step on a locale's collation goes
/// through `strcoll`, and a webhook batch walks text-keyed b-trees five times per event (three
/// probes in the reads; the dedupe key and `(reference, sequence)` in the insert). Measured in
/// BENCHMARKS.md. SQLite
/// already compares bytes (`BINARY`). Changing a collation rewrites no table, but rebuilds the
/// indexes on these columns, holding the table's lock meanwhile.
const BYTE_ORDER_KEYS: PostgresOnly = PostgresOnly(Sql {
    name: "m0010_byte_order_keys",
    statements: &[
        r#"ALTER TABLE events
            ALTER COLUMN dedupe_key TYPE VARCHAR(255) COLLATE "C",
            ALTER COLUMN reference TYPE VARCHAR(64) COLLATE "C""#,
        r#"ALTER TABLE payments
            ALTER COLUMN reference TYPE VARCHAR(50) COLLATE "C",
            ALTER COLUMN customer_key TYPE VARCHAR(128) COLLATE "C""#,
        r#"ALTER TABLE operations
            ALTER COLUMN kind TYPE VARCHAR(16) COLLATE "C",
            ALTER COLUMN scope TYPE VARCHAR(50) COLLATE "C",
            ALTER COLUMN idempotency_key TYPE VARCHAR(50) COLLATE "C""#,
        r#"ALTER TABLE customers ALTER COLUMN customer_key TYPE VARCHAR(128) COLLATE "C""#,
    ],
});

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    /// Every column an index looks keys up by compares bytes on PostgreSQL (m0010).
    #[tokio::test]
    async fn postgres_key_columns_compare_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, url) = crate::test_support::fresh_store(&dir).await;
        if !url.starts_with("postgres") {
            return; // SQLite's default collation (BINARY) already compares bytes
        }
        let pool = store.postgres_pool().unwrap();
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT table_name || '.' || column_name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND collation_name = 'C' ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            columns,
            [
                "customers.customer_key",
                "events.dedupe_key",
                "events.reference",
                "operations.idempotency_key",
                "operations.kind",
                "operations.scope",
                "payments.customer_key",
                "payments.reference",
            ]
        );
    }
}
