//! PostgreSQL's form of the group commit's reads and insert, written as the text of simple-query
//! messages (`pg_txn` sends them): the append lock and the three reads go in one message, the
//! event insert, the payments' updates, the `NOTIFY` and `COMMIT` in another, so a batch of
//! webhooks costs two round trips, for payments paygate knows or not. A simple query carries no bound parameters, so every value is written as a literal
//! (`pg_literal`).
//!
//! Each list is one array (`= ANY('{…}')`, `UNNEST('{…}', …)`): the same index probes as
//! `IN (…)`, and a plan made in microseconds whatever the batch size (a multi-row VALUES of 32 ×
//! 12 values took 0.5 ms to plan on every commit).

use std::{
    collections::{HashMap, HashSet},
    fmt::Write,
};

use sea_orm::{FromQueryResult, QueryResult};
use sqlx::postgres::PgRow;

use crate::domain::Payment;

use super::{
    batch::{self, Insert, Loaded, Stored},
    change::PaymentChange,
    convert,
    entities::payment,
    now_ms,
    pg_literal::{push_array, push_text},
    StoreError, NOTIFY_CHANNEL,
};

/// The reads a batch needs, after the append lock, as the statements of one message; `read`
/// makes them into what the plan needs.
pub(super) struct Reads {
    pub sql: String,
}

impl Reads {
    /// The known payments, the dedupe keys already recorded, and the log totals of the known
    /// payments that get events (`batch::with_events`, decided by PostgreSQL from the first
    /// read's table, in the same transaction).
    pub fn new(changes: &[PaymentChange]) -> Result<Self, StoreError> {
        let mut sql = String::with_capacity(1024);
        sql.push_str("SELECT * FROM payments WHERE reference = ANY(");
        push_array(&mut sql, &batch::references(changes), |r| r, "varchar[]")?;
        sql.push_str("); SELECT dedupe_key FROM events WHERE dedupe_key = ANY(");
        push_array(&mut sql, &batch::keys(changes), |k| k, "varchar[]")?;
        sql.push_str(
            "); SELECT reference, name, amount, success FROM events WHERE reference = ANY(ARRAY(\
             SELECT reference FROM payments WHERE reference = ANY(",
        );
        push_array(
            &mut sql,
            &batch::references_with_events(changes),
            |r| r,
            "varchar[]",
        )?;
        sql.push_str(")))");
        Ok(Self { sql })
    }

    /// What the plan needs, from the rows of this message's statements.
    pub fn read(&self, statements: Vec<Vec<PgRow>>) -> Result<Loaded, StoreError> {
        let mut statements = statements.into_iter();
        let mut next = || {
            statements.next().ok_or_else(|| {
                StoreError::Corrupt("a read of the group commit went missing".into())
            })
        };
        let mut payments = HashMap::new();
        for row in next()? {
            let model = payment::Model::from_query_result(&QueryResult::from(row), "")?;
            let (reference, stored) = Stored::from_model(model)?;
            payments.insert(reference, stored);
        }
        let mut recorded = HashSet::new();
        for row in next()? {
            recorded.insert(QueryResult::from(row).try_get::<String>("", "dedupe_key")?);
        }
        let mut totals = HashMap::new();
        for row in next()? {
            let row = QueryResult::from(row);
            let name: String = row.try_get("", "name")?;
            batch::add_to_total(
                &mut totals,
                row.try_get("", "reference")?,
                &name,
                row.try_get("", "amount")?,
                row.try_get("", "success")?,
            );
        }
        Ok(Loaded {
            payments,
            recorded,
            totals,
        })
    }
}

/// The statements of the message that ends with `COMMIT` (none when the batch writes nothing
/// else): the event insert, the changed payments' updates, the commit notice. The insert, when
/// there is one, is the first statement (`inserted` reads its rows).
pub(super) fn last_message(
    inserts: &[Insert],
    updates: &[(Payment, bool)],
    origin: &str,
) -> Result<String, StoreError> {
    let mut sql = String::with_capacity(256 + inserts.len() * 512 + updates.len() * 512);
    if !inserts.is_empty() {
        push_insert(&mut sql, inserts)?;
    }
    for (payment, confirmed) in updates {
        if !sql.is_empty() {
            sql.push_str("; ");
        }
        push_update(&mut sql, payment, *confirmed)?;
    }
    if !inserts.is_empty() {
        let _ = write!(
            sql,
            "; SELECT pg_notify('{NOTIFY_CHANNEL}', \
             currval(pg_get_serial_sequence('events', 'sequence'))::text || "
        );
        push_text(&mut sql, &format!(" {origin}"))?;
        sql.push(')');
    }
    Ok(sql)
}

/// The event insert. Rows are numbered in array order (`ORDER BY n`), so the log order is the
/// batch order; `currval` (in the notice) is then this session's last sequence, the newest event
/// of the batch.
fn push_insert(sql: &mut String, inserts: &[Insert]) -> Result<(), StoreError> {
    sql.push_str(
        "INSERT INTO events (dedupe_key, reference, psp_reference, name, currency, amount, \
         timestamp_ms, idempotency_key, success, source, payment, recorded_ms) \
         SELECT k, r, p, m, c, a, t, i, s, o, j, ",
    );
    let _ = write!(sql, "{} FROM UNNEST(", now_ms());
    let text = "varchar[]";
    push_array(sql, inserts, |i| i.key.as_str(), text)?;
    sql.push(',');
    push_array(sql, inserts, |i| i.event.reference.as_str(), text)?;
    sql.push(',');
    push_array(sql, inserts, |i| i.event.psp_reference.as_str(), text)?;
    sql.push(',');
    push_array(sql, inserts, |i| i.event.name.as_str(), text)?;
    sql.push(',');
    push_array(sql, inserts, |i| i.event.amount.currency.code(), text)?;
    sql.push(',');
    push_array(sql, inserts, |i| i.event.amount.value, "int8[]")?;
    sql.push(',');
    push_array(
        sql,
        inserts,
        |i| i.event.timestamp.timestamp_millis(),
        "int8[]",
    )?;
    sql.push(',');
    push_array(sql, inserts, |i| i.event.idempotency_key.as_deref(), text)?;
    sql.push(',');
    push_array(sql, inserts, |i| i.event.success, "bool[]")?;
    sql.push(',');
    push_array(sql, inserts, |i| i.event.source.as_str(), text)?;
    sql.push(',');
    push_array(sql, inserts, |i| i.snapshot.as_deref(), "text[]")?;
    sql.push_str(
        ") WITH ORDINALITY AS u(k, r, p, m, c, a, t, i, s, o, j, n) \
         ORDER BY n RETURNING sequence, dedupe_key",
    );
    Ok(())
}

/// The UPDATE of a changed payment: the columns `payments::update` sets (not the customer key,
/// which never changes after the create).
fn push_update(sql: &mut String, payment: &Payment, confirmed: bool) -> Result<(), StoreError> {
    let m = convert::payment_model(payment, confirmed);
    let texts = [
        ("psp_reference", Some(m.psp_reference.as_str())),
        ("state", Some(m.state.as_str())),
        ("currency", Some(m.currency.as_str())),
        ("user_flow", Some(m.user_flow.as_str())),
        ("redirect_url", m.redirect_url.as_deref()),
        ("phone_number", m.phone_number.as_deref()),
        ("profile_sub", m.profile_sub.as_deref()),
        ("metadata", Some(m.metadata.as_str())),
    ];
    sql.push_str("UPDATE payments SET ");
    for (column, value) in texts {
        let _ = write!(sql, "{column} = ");
        match value {
            Some(value) => push_text(sql, value)?,
            None => sql.push_str("NULL"),
        }
        sql.push_str(", ");
    }
    let _ = write!(
        sql,
        "amount = {}, authorized = {}, captured = {}, refunded = {}, cancelled = {}, \
         confirmed = {}, update_time_ms = {} WHERE reference = ",
        m.amount, m.authorized, m.captured, m.refunded, m.cancelled, m.confirmed, m.update_time_ms
    );
    push_text(sql, &m.reference)
}

/// The new events' sequences in insert order, from the rows of the insert statement.
pub(super) fn inserted(inserts: &[Insert], rows: Vec<PgRow>) -> Result<Vec<u64>, StoreError> {
    let mut by_key = HashMap::with_capacity(inserts.len());
    batch::note_returned(
        rows.into_iter().map(QueryResult::from).collect(),
        &mut by_key,
    )?;
    batch::in_insert_order(inserts, &by_key)
}
