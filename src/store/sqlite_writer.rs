//! SQLite's write path for the group commit: every batch of journal entries and changes
//! (creates and captures, webhooks, Vipps' answers, polled states) is written on one dedicated
//! thread that owns one `rusqlite` connection and keeps its statements prepared.
//!
//! Why not sqlx like the rest of the store: sqlx runs each SQLite connection on a worker thread
//! and hands every statement and every result row across threads (a channel send and a futex
//! wake-up each), and sea-orm rebuilds each statement's SQL per call. Under webhook load that was
//! most of paygate's CPU (see BENCHMARKS.md). Here a whole batch crosses threads twice (the job
//! and its answer) and each row costs one step of a statement prepared once.
//!
//! What a batch does is decided by `batch::plan`, shared with the sea-orm writer; this module
//! only loads and writes. The schema stays sea-orm's (migrations, entities); the statements here
//! name the same columns, and `tests::both_writers_leave_the_same_rows` keeps the two writers
//! equal. The other writes (leases, retention, erasure) stay sea-orm's, serialized with this
//! thread by the store's write lock.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::mpsc,
    thread,
    time::Duration,
};

use rusqlite::{
    params, Connection, OptionalExtension, Row, ToSql, Transaction, TransactionBehavior,
};
use tokio::sync::oneshot;

use super::{
    batch::{self, Effect, Insert, Loaded, Stored},
    change::PaymentChange,
    convert,
    entities::{operation, payment},
    now_ms,
    operations::{self, JournalEntry, Journaled},
    StoreError, Written, SQLITE_PRAGMAS,
};
use crate::domain::{Aggregate, EventName, NewOperation, Operation, OperationStatus, Payment};

type Reply = oneshot::Sender<Result<Written, StoreError>>;

enum Job {
    Commit(Vec<JournalEntry>, Vec<PaymentChange>, Reply),
    /// Close the connection (the store is closing).
    Stop,
}

/// The handle of the writer thread.
#[derive(Clone)]
pub(super) struct SqliteWriter {
    jobs: mpsc::Sender<Job>,
}

impl SqliteWriter {
    /// Opens a second connection to the database file with the pool's settings and starts the
    /// thread that owns it. Its statements are prepared at their first use, after the pool has
    /// run the migrations.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy_timeout)?;
        // The pool's settings: the same durability (WAL, synchronous=FULL) and the rest.
        for (name, value) in SQLITE_PRAGMAS {
            conn.pragma_update(None, name, value)?;
        }
        conn.set_prepared_statement_cache_capacity(32);
        let (jobs, queue) = mpsc::channel();
        thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve(conn, queue))
            .map_err(|e| StoreError::Unavailable(format!("starting the SQLite writer: {e}")))?;
        Ok(Self { jobs })
    }

    /// Journals the entries, then loads, plans and writes the changes, in one transaction (one
    /// fsync). A refused entry (reference taken) is answered alone; any database error fails
    /// the whole batch.
    pub async fn commit(
        &self,
        entries: Vec<JournalEntry>,
        changes: Vec<PaymentChange>,
    ) -> Result<Written, StoreError> {
        let stopped = || StoreError::Unavailable("the SQLite writer is stopped".into());
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Commit(entries, changes, reply))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Closes the connection once the jobs already sent are done.
    pub fn stop(&self) {
        let _ = self.jobs.send(Job::Stop);
    }
}

fn serve(mut conn: Connection, queue: mpsc::Receiver<Job>) {
    while let Ok(job) = queue.recv() {
        match job {
            Job::Commit(entries, changes, reply) => {
                let _ = reply.send(commit(&mut conn, entries, changes));
            }
            Job::Stop => break,
        }
    }
}

fn commit(
    conn: &mut Connection,
    entries: Vec<JournalEntry>,
    changes: Vec<PaymentChange>,
) -> Result<Written, StoreError> {
    // IMMEDIATE takes the write lock first: a deferred transaction that reads and then writes
    // fails at once when another connection wrote meanwhile; this one waits busy_timeout.
    let txn = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Entries first: none can depend on a change of the same batch (a change for an operation
    // is only made after its entry was committed and answered).
    let mut journaled = Vec::with_capacity(entries.len());
    for entry in entries {
        journaled.push(operations::in_batch(journal(&txn, entry))?);
    }
    let payments = load_payments(&txn, &batch::references(&changes))?;
    let recorded = recorded_keys(&txn, &batch::keys(&changes))?;
    let totals = log_totals(&txn, &batch::with_events(&changes, &payments))?;
    let loaded = Loaded {
        payments,
        recorded,
        totals,
    };
    let mut plan = batch::plan(changes, loaded)?;
    for effect in &plan.effects {
        write_effect(&txn, effect)?;
    }
    let sequences = insert_events(&txn, &plan.inserts)?;
    plan.number(&sequences)?;
    for (p, confirmed) in &plan.updates {
        update_payment(&txn, p, *confirmed)?;
    }
    if !plan.inserts.is_empty() {
        crate::crashpoint::hit("in_commit");
    }
    txn.commit()?;
    Ok((journaled, plan.results))
}

/// `operations::journal_in`, on this connection: a key seen before returns the earlier
/// operation; a reference already used by another create key is refused before any write.
fn journal(txn: &Transaction<'_>, entry: JournalEntry) -> Result<Journaled, StoreError> {
    let (op, create) = match entry {
        JournalEntry::Create {
            payment,
            wants_profile,
            op,
        } => (op, Some((payment, wants_profile))),
        JournalEntry::Operation(op) => (op, None),
    };
    if let Some(existing) = find_operation(txn, &op)? {
        return Ok(Journaled::Existing(existing));
    }
    if let Some((payment, wants_profile)) = create {
        let reference = payment.reference.as_str();
        let taken = txn
            .prepare_cached("SELECT 1 FROM payments WHERE reference = ?1")?
            .exists([reference])?;
        if taken {
            return Err(StoreError::ReferenceTaken(reference.to_owned()));
        }
        insert_payment(txn, &payment)?;
        if wants_profile {
            write_effect(
                txn,
                &Effect::ProfileStatus {
                    reference: reference.to_owned(),
                    status: "pending",
                    failure: None,
                },
            )?;
        }
    }
    let now = now_ms();
    txn.prepare_cached(
        "INSERT INTO operations (kind, scope, reference, idempotency_key, fingerprint, request, \
         status, outcome, created_ms, updated_ms, lease_until_ms, next_send_ms, sends, caller) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?8, ?9, ?8, 1, ?10)",
    )?
    .execute(params![
        op.kind.as_str(),
        op.scope(),
        op.reference,
        op.idempotency_key,
        op.fingerprint,
        op.request.to_string(),
        OperationStatus::Pending.as_str(),
        now,
        op.lease_until_ms,
        op.caller,
    ])?;
    let id = txn.last_insert_rowid();
    Ok(Journaled::Started(operations::started(op, id)))
}

fn find_operation(
    txn: &Transaction<'_>,
    op: &NewOperation,
) -> Result<Option<Operation>, StoreError> {
    let mut select = txn.prepare_cached(
        "SELECT id, kind, scope, reference, idempotency_key, fingerprint, request, status, \
         outcome, created_ms, updated_ms, lease_until_ms, next_send_ms, sends, caller \
         FROM operations WHERE kind = ?1 AND scope = ?2 AND idempotency_key = ?3",
    )?;
    let key = params![op.kind.as_str(), op.scope(), op.idempotency_key];
    let found = select.query_row(key, operation_row).optional()?;
    found.map(convert::operation).transpose()
}

/// A new (not yet confirmed) payment: every column, as `payments::insert` writes them.
fn insert_payment(txn: &Transaction<'_>, p: &Payment) -> Result<(), StoreError> {
    let m = convert::payment_model(p, false);
    txn.prepare_cached(&format!(
        "INSERT INTO payments ({PAYMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
         ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
    ))?
    .execute(&payment_params(&m)[..])?;
    Ok(())
}

/// A payment row, selected as `PAYMENT_COLUMNS`.
fn payment_row(r: &Row<'_>) -> rusqlite::Result<payment::Model> {
    Ok(payment::Model {
        reference: r.get(0)?,
        psp_reference: r.get(1)?,
        state: r.get(2)?,
        currency: r.get(3)?,
        amount: r.get(4)?,
        authorized: r.get(5)?,
        captured: r.get(6)?,
        refunded: r.get(7)?,
        cancelled: r.get(8)?,
        user_flow: r.get(9)?,
        redirect_url: r.get(10)?,
        customer_key: r.get(11)?,
        phone_number: r.get(12)?,
        profile_sub: r.get(13)?,
        metadata: r.get(14)?,
        confirmed: r.get(15)?,
        failure: r.get(16)?,
        profile_status: r.get(17)?,
        next_poll_ms: r.get(18)?,
        create_time_ms: r.get(19)?,
        update_time_ms: r.get(20)?,
    })
}

/// An operation row, selected in `operation::Model`'s field order.
fn operation_row(r: &Row<'_>) -> rusqlite::Result<operation::Model> {
    Ok(operation::Model {
        id: r.get(0)?,
        kind: r.get(1)?,
        scope: r.get(2)?,
        reference: r.get(3)?,
        idempotency_key: r.get(4)?,
        fingerprint: r.get(5)?,
        request: r.get(6)?,
        status: r.get(7)?,
        outcome: r.get(8)?,
        created_ms: r.get(9)?,
        updated_ms: r.get(10)?,
        lease_until_ms: r.get(11)?,
        next_send_ms: r.get(12)?,
        sends: r.get(13)?,
        caller: r.get(14)?,
    })
}

/// A payment's columns in `PAYMENT_COLUMNS` order (`?1` to `?21`).
fn payment_params(m: &payment::Model) -> [&dyn ToSql; 21] {
    [
        &m.reference,
        &m.psp_reference,
        &m.state,
        &m.currency,
        &m.amount,
        &m.authorized,
        &m.captured,
        &m.refunded,
        &m.cancelled,
        &m.user_flow,
        &m.redirect_url,
        &m.customer_key,
        &m.phone_number,
        &m.profile_sub,
        &m.metadata,
        &m.confirmed,
        &m.failure,
        &m.profile_status,
        &m.next_poll_ms,
        &m.create_time_ms,
        &m.update_time_ms,
    ]
}

const PAYMENT_COLUMNS: &str = "reference, psp_reference, state, currency, amount, authorized, \
     captured, refunded, cancelled, user_flow, redirect_url, customer_key, phone_number, \
     profile_sub, metadata, confirmed, failure, profile_status, next_poll_ms, create_time_ms, \
     update_time_ms";

fn load_payments(
    txn: &Transaction<'_>,
    references: &[String],
) -> Result<HashMap<String, Stored>, StoreError> {
    let mut select = txn.prepare_cached(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE reference = ?1"
    ))?;
    let mut out = HashMap::new();
    for reference in references {
        let row = select.query_row([reference], payment_row).optional()?;
        if let Some(row) = row {
            let (reference, stored) = Stored::from_model(row)?;
            out.insert(reference, stored);
        }
    }
    Ok(out)
}

fn recorded_keys(txn: &Transaction<'_>, keys: &[String]) -> Result<HashSet<String>, StoreError> {
    let mut exists = txn.prepare_cached("SELECT 1 FROM events WHERE dedupe_key = ?1")?;
    let mut out = HashSet::new();
    for key in keys {
        if exists.exists([key])? {
            out.insert(key.clone());
        }
    }
    Ok(out)
}

fn log_totals(
    txn: &Transaction<'_>,
    references: &[String],
) -> Result<HashMap<String, Aggregate>, StoreError> {
    let mut select =
        txn.prepare_cached("SELECT name, amount, success FROM events WHERE reference = ?1")?;
    let mut out = HashMap::new();
    for reference in references {
        let mut total = Aggregate::default();
        let mut rows = select.query([reference])?;
        while let Some(row) = rows.next()? {
            let name: String = row.get(0)?;
            if let Some(name) = EventName::parse(&name) {
                total = total.with(name, row.get(1)?, row.get(2)?);
            }
        }
        out.insert(reference.clone(), total);
    }
    Ok(out)
}

/// One prepared single-row insert per event: SQLite numbers them in the order they run, which
/// is the batch order.
fn insert_events(txn: &Transaction<'_>, inserts: &[Insert]) -> Result<Vec<u64>, StoreError> {
    let mut insert = txn.prepare_cached(
        "INSERT INTO events (dedupe_key, reference, psp_reference, name, currency, amount, \
         timestamp_ms, idempotency_key, success, source, payment, recorded_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    let recorded_ms = now_ms();
    let mut sequences = Vec::with_capacity(inserts.len());
    for Insert {
        key,
        event: ev,
        snapshot,
        ..
    } in inserts
    {
        insert.execute(params![
            key,
            ev.reference,
            ev.psp_reference,
            ev.name.as_str(),
            ev.amount.currency.code(),
            ev.amount.value,
            ev.timestamp.timestamp_millis(),
            ev.idempotency_key,
            ev.success,
            ev.source.as_str(),
            snapshot,
            recorded_ms,
        ])?;
        sequences.push(batch::sequence(txn.last_insert_rowid())?);
    }
    Ok(sequences)
}

/// The SET list both payment UPDATEs share (all but `state`), as a literal for `concat!`.
macro_rules! payment_update_set {
    () => {
        "psp_reference = ?2, currency = ?4, amount = ?5, authorized = ?6, captured = ?7, \
         refunded = ?8, cancelled = ?9, user_flow = ?10, redirect_url = ?11, phone_number = ?13, \
         profile_sub = ?14, metadata = ?15, confirmed = ?16, update_time_ms = ?21"
    };
}

/// The columns `payments::update` sets (the profile status, the failure and the poll schedule
/// are written by their own statements; the customer key never changes after the create).
fn update_payment(txn: &Transaction<'_>, p: &Payment, confirmed: bool) -> Result<(), StoreError> {
    let m = convert::payment_model(p, confirmed);
    let params = payment_params(&m);
    // Most updates keep the state (a create's result, a partial capture): leaving `state` out
    // of the SET spares its index (`payments_poll`) a rewritten entry, which is one WAL page
    // more per commit. When the state did change, no row matches and the second statement,
    // with the state, writes it. Both bind all of `payment_params`; ?12 and ?17 to ?20 (customer
    // key, failure, profile status, poll schedule, create time) are not written here.
    let same_state = txn
        .prepare_cached(concat!(
            "UPDATE payments SET ",
            payment_update_set!(),
            " WHERE reference = ?1 AND state = ?3"
        ))?
        .execute(&params[..])?;
    if same_state == 0 {
        txn.prepare_cached(concat!(
            "UPDATE payments SET state = ?3, ",
            payment_update_set!(),
            " WHERE reference = ?1"
        ))?
        .execute(&params[..])?;
    }
    Ok(())
}

fn write_effect(txn: &Transaction<'_>, effect: &Effect) -> Result<(), StoreError> {
    match effect {
        Effect::Customer(c) => {
            txn.prepare_cached(
                "INSERT INTO customers (customer_key, phone_number, profile_sub, shared_time_ms) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (customer_key) DO UPDATE SET \
                 phone_number = excluded.phone_number, profile_sub = excluded.profile_sub, \
                 shared_time_ms = excluded.shared_time_ms",
            )?
            .execute(params![
                c.customer_key,
                c.phone_number.expose(),
                c.profile_sub,
                c.shared_time.timestamp_millis(),
            ])?;
        }
        Effect::ProfileStatus {
            reference,
            status,
            failure,
        } => {
            txn.prepare_cached(
                "UPDATE payments SET profile_status = ?2, failure = ?3 WHERE reference = ?1",
            )?
            .execute(params![reference, status, failure])?;
        }
        Effect::DeletePayment(reference) => {
            txn.prepare_cached("DELETE FROM payments WHERE reference = ?1")?
                .execute([reference])?;
        }
        Effect::Finish {
            id,
            status,
            outcome,
        } => {
            let settled = txn
                .prepare_cached(
                    "UPDATE operations SET status = ?2, outcome = ?3, updated_ms = ?4, \
                     lease_until_ms = 0 WHERE id = ?1 AND status = ?5",
                )?
                .execute(params![
                    id,
                    status.as_str(),
                    outcome.to_string(),
                    now_ms(),
                    OperationStatus::Pending.as_str(),
                ])?;
            if settled != 1 {
                // Another sender settled it first: its outcome stands.
                tracing::info!(operation = id, "operation was already settled");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use chrono::{TimeZone, Utc};
    use rusqlite::OptionalExtension;

    use super::super::{
        batch_write, operations, CommitResult, JournalEntry, Journaled, PaymentChange, Settlement,
    };
    use crate::{
        domain::{
            Aggregate, Currency, EventName, EventSource, Money, NewEvent, NewOperation,
            OperationKind, PaymentState, PhoneNumber, ProfileOutcome, RemoteView,
        },
        test_support,
    };

    fn event(reference: &str, name: EventName, value: i64, key: Option<&str>) -> NewEvent {
        NewEvent {
            reference: reference.into(),
            psp_reference: format!("psp-{reference}"),
            name,
            amount: Money::new(Currency::Nok, value),
            timestamp: Utc.timestamp_millis_opt(1_700_000_000_000).unwrap(),
            idempotency_key: key.map(str::to_owned),
            success: true,
            source: EventSource::Webhook,
        }
    }

    fn operation(kind: OperationKind, reference: &str, key: &str) -> NewOperation {
        NewOperation {
            kind,
            reference: reference.into(),
            idempotency_key: key.into(),
            fingerprint: "f".into(),
            request: serde_json::json!({}),
            lease_until_ms: 0,
            caller: "test".into(),
        }
    }

    /// Journal entries: creates of `payment-a` (wanting the profile), `payment-b` and
    /// `payment-c`, a capture of `payment-a`, then the create of `payment-b` again (a retry)
    /// and another key's create of `payment-c` (the reference is taken).
    fn entries() -> Vec<JournalEntry> {
        let create = |reference: &str, wants_profile: bool| {
            let mut payment = test_support::payment(reference);
            payment.create_time = Utc.timestamp_millis_opt(1_700_000_000_000).unwrap();
            // The shared number is remembered for the customer.
            payment.customer_key = wants_profile.then(|| format!("customer-{reference}"));
            JournalEntry::Create {
                payment: Box::new(payment),
                wants_profile,
                op: operation(
                    OperationKind::Create,
                    reference,
                    &format!("create-{reference}"),
                ),
            }
        };
        let mut taken = create("payment-c", false);
        if let JournalEntry::Create { op, .. } = &mut taken {
            op.idempotency_key = "another-key".into();
        }
        vec![
            create("payment-a", true),
            create("payment-b", false),
            create("payment-c", false),
            JournalEntry::Operation(operation(OperationKind::Capture, "payment-a", "cap-1")),
            create("payment-b", false),
            taken,
        ]
    }

    /// What journalling answered, without the ids' order of assignment hidden.
    fn journaled(outcomes: Vec<Result<Journaled, crate::store::StoreError>>) -> Vec<String> {
        outcomes
            .into_iter()
            .map(|o| match o {
                Ok(Journaled::Started(op)) => format!("started {op:?}"),
                Ok(Journaled::Existing(op)) => format!("existing {op:?}"),
                Err(e) => format!("refused {e}"),
            })
            .collect()
    }

    /// Batches that make every kind of write a change can cause: confirm and settle, discard,
    /// events of known and unknown payments, duplicates within and across batches (of both), a
    /// failed event, a shared profile and a late second one.
    fn batches(ops: &[i64]) -> Vec<Vec<PaymentChange>> {
        let phone = PhoneNumber::parse("phone_number", "4712345678").unwrap();
        let shared = ProfileOutcome::Shared {
            phone_number: phone,
            sub: "sub-a".into(),
        };
        let authorized = |r: &str| event(r, EventName::Authorized, 10_000, None);
        let capture = event("payment-a", EventName::Captured, 4_000, Some("cap-1"));
        let mut failed = event("payment-b", EventName::Captured, 500, Some("x"));
        failed.success = false;
        vec![
            vec![
                PaymentChange {
                    reference: "payment-a".into(),
                    confirm: true,
                    settle: Some((ops[0], Settlement::Succeeded)),
                    ..Default::default()
                },
                PaymentChange {
                    reference: "payment-b".into(),
                    confirm: true,
                    settle: Some((ops[1], Settlement::Succeeded)),
                    ..Default::default()
                },
                PaymentChange {
                    reference: "payment-c".into(),
                    discard_payment: true,
                    settle: Some((ops[2], Settlement::Rejected(serde_json::json!({"no": 1})))),
                    ..Default::default()
                },
                PaymentChange {
                    reference: "ghost-payment".into(),
                    events: vec![authorized("ghost-payment")],
                    confirm: true,
                    ..Default::default()
                },
            ],
            vec![
                PaymentChange {
                    reference: "payment-a".into(),
                    events: vec![authorized("payment-a"), authorized("payment-a")],
                    confirm: true,
                    ..Default::default()
                },
                PaymentChange {
                    reference: "payment-a".into(),
                    events: vec![event("payment-a", EventName::ProfileShared, 0, None)],
                    profile: Some(shared.clone()),
                    ..Default::default()
                },
                PaymentChange {
                    reference: "payment-a".into(),
                    events: vec![capture.clone()],
                    settle: Some((ops[3], Settlement::Succeeded)),
                    ..Default::default()
                },
                PaymentChange {
                    reference: "payment-b".into(),
                    events: vec![authorized("payment-b"), failed],
                    ..Default::default()
                },
            ],
            vec![
                PaymentChange {
                    reference: "payment-a".into(),
                    events: vec![capture, authorized("payment-a")],
                    settle: Some((ops[3], Settlement::Rejected(serde_json::json!("late")))),
                    ..Default::default()
                },
                PaymentChange {
                    reference: "payment-a".into(),
                    profile: Some(shared),
                    ..Default::default()
                },
                PaymentChange {
                    reference: "ghost-payment".into(),
                    // A repeat of the first batch's event of a payment paygate does not know.
                    events: vec![
                        authorized("ghost-payment"),
                        event("ghost-payment", EventName::Captured, 100, Some("g")),
                    ],
                    ..Default::default()
                },
            ],
            // Webhooks only (no journal settlement, no profile): PostgreSQL's optimistic path.
            vec![
                PaymentChange {
                    reference: "payment-a".into(),
                    events: vec![event(
                        "payment-a",
                        EventName::Refunded,
                        1_000,
                        Some("ref-1"),
                    )],
                    ..Default::default()
                },
                PaymentChange {
                    reference: "payment-b".into(),
                    events: vec![event("payment-b", EventName::Cancelled, 10_000, None)],
                    ..Default::default()
                },
                PaymentChange {
                    reference: "payment-a".into(),
                    events: vec![event("payment-a", EventName::Refunded, 500, Some("ref-2"))],
                    ..Default::default()
                },
            ],
        ]
    }

    /// What a writer answered, without the wall-clock times.
    fn answered(results: &[CommitResult]) -> Vec<String> {
        let state = |p: &Option<crate::domain::Payment>| {
            p.as_ref()
                .map(|p| format!("{:?} {:?} {:?}", p.state, p.aggregate, p.phone_number))
        };
        results
            .iter()
            .map(|r| {
                let appended: Vec<String> = r
                    .appended
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {} {:?}",
                            e.sequence,
                            e.event.dedupe_key(),
                            state(&e.payment)
                        )
                    })
                    .collect();
                format!("{:?} {appended:?}", state(&r.payment))
            })
            .collect()
    }

    /// Every row the writers write, without the wall-clock columns.
    fn rows(dir: &tempfile::TempDir) -> Vec<Vec<String>> {
        let conn = rusqlite::Connection::open(dir.path().join("paygate.db")).unwrap();
        let queries = [
            "SELECT sequence, dedupe_key, reference, psp_reference, name, currency, amount, \
             timestamp_ms, idempotency_key, success, source, \
             json_remove(payment, '$.update_time') FROM events ORDER BY sequence",
            "SELECT reference, psp_reference, state, currency, amount, authorized, captured, \
             refunded, cancelled, user_flow, redirect_url, customer_key, phone_number, \
             profile_sub, metadata, confirmed, failure, profile_status, next_poll_ms \
             FROM payments ORDER BY reference",
            "SELECT customer_key, phone_number, profile_sub FROM customers ORDER BY 1",
            "SELECT id, kind, scope, reference, idempotency_key, fingerprint, request, status, \
             json_remove(outcome, '$.update_time'), lease_until_ms, sends, caller \
             FROM operations ORDER BY id",
        ];
        let mut out = Vec::new();
        for sql in queries {
            let mut table = Vec::new();
            let mut statement = conn.prepare(sql).unwrap();
            let columns = statement.column_count();
            let mut found = statement.query([]).unwrap();
            while let Some(row) = found.next().unwrap() {
                let values: Vec<rusqlite::types::Value> =
                    (0..columns).map(|i| row.get(i).unwrap()).collect();
                table.push(format!("{values:?}"));
            }
            out.push(table);
        }
        out
    }

    #[tokio::test]
    async fn both_writers_leave_the_same_rows() {
        let (sea_dir, fast_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sea, url) = test_support::fresh_store(&sea_dir).await;
        if !url.starts_with("sqlite") {
            return; // the prepared-statement writer is SQLite's
        }
        let (fast, _) = test_support::fresh_store(&fast_dir).await;
        assert!(
            fast.sqlite_writer.is_some(),
            "a SQLite file has the writer thread"
        );
        // Journal entries, one per transaction on the sea-orm side.
        let mut via_sea = Vec::new();
        for entry in entries() {
            let w = sea.begin_write().await.unwrap();
            via_sea.push(operations::journal_in(&w.txn, entry).await);
            w.txn.commit().await.unwrap();
        }
        let (via_fast, _) = fast.write_batch(entries(), vec![]).await.unwrap();
        let (via_sea, via_fast) = (journaled(via_sea), journaled(via_fast));
        assert_eq!(via_sea, via_fast);
        assert!(via_fast[4].starts_with("existing") && via_fast[5].starts_with("refused"));
        let ops = [1, 2, 3, 4];
        for changes in batches(&ops) {
            let w = sea.begin_write().await.unwrap();
            let via_sea = batch_write::apply(&w.txn, changes.clone()).await.unwrap();
            w.txn.commit().await.unwrap();
            let (_, via_fast) = fast.write_batch(vec![], changes).await.unwrap();
            assert_eq!(answered(&via_sea), answered(&via_fast));
        }
        let (sea_rows, fast_rows) = (rows(&sea_dir), rows(&fast_dir));
        assert_eq!(sea_rows, fast_rows);
        // The batches did write what the comparison is about.
        let all = fast_rows.concat().join("\n");
        for expected in [
            "payment-a:CAPTURED:k:cap-1",
            "ghost-payment:AUTHORIZED",
            "payment-b:CAPTURED:failed:psp-payment-b",
            "4712345678",
            "customer-payment-a",
            "\"rejected\"",
            "\"succeeded\"",
        ] {
            assert!(all.contains(expected), "{expected} missing from\n{all}");
        }
        let payments = fast_rows[1].join("\n");
        assert!(
            !payments.contains("payment-c"),
            "the discarded payment stays:\n{payments}"
        );
        sea.close().await;
        fast.close().await;
    }
    /// The b-trees whose pages the WAL gained since frame `*seen` (then moved past them), named
    /// by SQLite's `dbstat`: what one commit wrote, page by page.
    fn pages_since(dir: &tempfile::TempDir, seen: &mut usize) -> Vec<String> {
        let wal = std::fs::read(dir.path().join("paygate.db-wal")).unwrap();
        let page_size = u32::from_be_bytes(wal[8..12].try_into().unwrap()) as usize;
        let frames: Vec<u32> = wal[32..]
            .chunks_exact(24 + page_size)
            .map(|frame| u32::from_be_bytes(frame[..4].try_into().unwrap()))
            .collect();
        assert!(frames.len() > *seen, "the WAL restarted or did not grow");
        let conn = rusqlite::Connection::open(dir.path().join("paygate.db")).unwrap();
        let mut owner = conn
            .prepare("SELECT name FROM dbstat WHERE pageno = ?1")
            .unwrap();
        let mut names: Vec<String> = frames[*seen..]
            .iter()
            .map(|page| {
                let name = owner.query_row([page], |r| r.get(0)).optional().unwrap();
                name.unwrap_or_else(|| format!("page {page}, now free"))
            })
            .collect();
        *seen = frames.len();
        names.sort();
        names.dedup();
        names
    }

    /// A create's two commits write the pages of the rows they add and of the indexes that must
    /// hold them, and no other: a payment without a customer key or profile writes no entry in
    /// the customer and profile indexes, a result that keeps the state leaves `payments_poll`
    /// alone, settling removes the operation's pending entry, and a known payment's event needs
    /// no retention entry. (Each page is a WAL frame and its share of the sync.)
    #[tokio::test]
    async fn a_create_writes_only_the_pages_its_rows_need() {
        let dir = tempfile::tempdir().unwrap();
        let (store, url) = test_support::fresh_store(&dir).await;
        if !url.starts_with("sqlite") {
            return; // WAL pages are SQLite's
        }
        let mut seen = 0;
        pages_since(&dir, &mut seen);
        let create = JournalEntry::Create {
            payment: Box::new(test_support::payment("taxi-ride-1")),
            wants_profile: false,
            op: operation(OperationKind::Create, "taxi-ride-1", "create-taxi-ride-1"),
        };
        let (journaled, _) = store.write_batch(vec![create], vec![]).await.unwrap();
        let Ok(Journaled::Started(op)) = &journaled[0] else {
            panic!("not started: {journaled:?}")
        };
        assert_eq!(
            pages_since(&dir, &mut seen),
            [
                "operations",
                "operations_key",
                "operations_pending",
                "payments",
                "payments_poll",
                "sqlite_autoindex_payments_1",
                "sqlite_sequence",
            ]
        );
        let result = PaymentChange {
            reference: "taxi-ride-1".into(),
            events: vec![NewEvent::own(
                "taxi-ride-1",
                EventName::Created,
                Money::new(Currency::Nok, 10_000),
                "",
                "create-taxi-ride-1",
            )],
            remote: Some(RemoteView {
                state: PaymentState::Created,
                aggregate: Aggregate::default(),
                psp_reference: String::new(),
                redirect_url: Some("https://example.test/landing".into()),
                profile_sub: None,
            }),
            confirm: true,
            settle: Some((op.id, Settlement::Succeeded)),
            ..Default::default()
        };
        let (_, results) = store.write_batch(vec![], vec![result]).await.unwrap();
        assert_eq!(results[0].appended.len(), 1, "the event was logged");
        assert_eq!(
            pages_since(&dir, &mut seen),
            [
                "events",
                "events_reference",
                "operations",
                "operations_pending",
                "payments",
                "sqlite_autoindex_events_1",
                "sqlite_sequence",
            ]
        );
        store.close().await;
    }

    /// PostgreSQL's fixed-text statements (`pg_lists`: arrays and UNNEST, the optional columns
    /// with presence flags) answer and log exactly what SQLite's writer does. Runs only with
    /// `TEST_DATABASE_URL` set to PostgreSQL.
    #[tokio::test]
    async fn postgres_statements_log_what_the_sqlite_writer_logs() {
        let (pg_dir, fast_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (pg, url) = test_support::fresh_store(&pg_dir).await;
        if !url.starts_with("postgres") {
            return;
        }
        let sqlite_url = format!(
            "sqlite://{}?mode=rwc",
            fast_dir.path().join("paygate.db").display()
        );
        let fast = crate::store::Store::connect(&test_support::database(&sqlite_url))
            .await
            .unwrap();
        fast.migrate().await.unwrap();
        let (via_pg, _) = pg.write_batch(entries(), vec![]).await.unwrap();
        let (via_fast, _) = fast.write_batch(entries(), vec![]).await.unwrap();
        assert_eq!(journaled(via_pg), journaled(via_fast));
        let ops = [1, 2, 3, 4];
        for changes in batches(&ops) {
            let (_, via_pg) = pg.write_batch(vec![], changes.clone()).await.unwrap();
            let (_, via_fast) = fast.write_batch(vec![], changes).await.unwrap();
            assert_eq!(answered(&via_pg), answered(&via_fast));
        }
        let logged = |events: Vec<crate::domain::PaymentEvent>| -> Vec<String> {
            events
                .into_iter()
                .map(|e| {
                    let snapshot = e.payment.map(|p| (p.state, p.aggregate, p.phone_number));
                    format!("{} {:?} {snapshot:?}", e.sequence, e.event)
                })
                .collect()
        };
        let pg_log = logged(pg.events_after(0, 100).await.unwrap());
        let fast_log = logged(fast.events_after(0, 100).await.unwrap());
        assert_eq!(pg_log, fast_log);
        for reference in ["payment-a", "payment-b", "payment-c", "ghost-payment"] {
            // Every column but the time of the last change (each writer's own clock).
            let stored = |p: Option<crate::domain::Payment>| {
                p.map(|mut p| {
                    p.update_time = chrono::DateTime::UNIX_EPOCH;
                    format!("{p:?}")
                })
            };
            let via_pg = stored(pg.get_payment(reference).await.unwrap());
            let via_fast = stored(fast.get_payment(reference).await.unwrap());
            assert_eq!(via_pg, via_fast, "{reference}");
        }
        let refunded = pg.get_payment("payment-a").await.unwrap().unwrap();
        assert_eq!(
            refunded.aggregate.refunded, 1_500,
            "the last batch was written"
        );
        let all = pg_log.join("\n");
        for expected in [
            "idempotency_key: None",
            "idempotency_key: Some(\"cap-1\")",
            "None",
        ] {
            assert!(all.contains(expected), "{expected} missing from\n{all}");
        }
        assert!(pg_log.len() >= 5, "{all}");
        pg.close().await;
        fast.close().await;
    }
}
