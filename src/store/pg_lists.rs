//! PostgreSQL's form of the group commit's reads and insert: each list travels as ONE array
//! parameter, so each statement has one text whatever the batch size.
//!
//! Why: an `IN ($1, …, $n)` or a multi-row VALUES has a new text for every batch size, so it is
//! parsed anew, and with `plan_cache_mode = force_custom_plan` (see `connect_postgres`) a VALUES
//! of 32 rows × 12 columns is also planned over 384 parameters on every commit. `= ANY($1)`
//! probes the same index as `IN` (a JSON list does not: `IN (SELECT jsonb_array_elements_text
//! ($1))` was planned as a hash join over the whole log), and `UNNEST` of twelve arrays is
//! planned in microseconds. sqlx prepares each text once per connection. An empty list is not
//! sent at all (a batch of webhooks for unknown payments needs no totals).

use std::collections::{HashMap, HashSet};

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement, Value};

use super::{
    batch::{sequence, Insert, Stored},
    entities::payment,
    now_ms, StoreError,
};
use crate::domain::{Aggregate, EventName};

fn statement(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// A text array parameter.
fn texts(values: impl IntoIterator<Item = String>) -> Value {
    values.into_iter().collect::<Vec<String>>().into()
}

pub(super) async fn load_payments<C: ConnectionTrait>(
    db: &C,
    references: &[String],
) -> Result<HashMap<String, Stored>, StoreError> {
    if references.is_empty() {
        return Ok(HashMap::new());
    }
    let query = statement(
        "SELECT * FROM payments WHERE reference = ANY($1)",
        vec![texts(references.iter().cloned())],
    );
    let rows = payment::Entity::find().from_raw_sql(query).all(db).await?;
    rows.into_iter().map(Stored::from_model).collect()
}

pub(super) async fn recorded_keys<C: ConnectionTrait>(
    db: &C,
    keys: &[String],
) -> Result<HashSet<String>, StoreError> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let query = statement(
        "SELECT dedupe_key FROM events WHERE dedupe_key = ANY($1)",
        vec![texts(keys.iter().cloned())],
    );
    let mut out = HashSet::new();
    for row in db.query_all(query).await? {
        out.insert(row.try_get::<String>("", "dedupe_key")?);
    }
    Ok(out)
}

/// Sums of the recorded events of these payments, from three columns only.
pub(super) async fn log_totals<C: ConnectionTrait>(
    db: &C,
    references: &[String],
) -> Result<HashMap<String, Aggregate>, StoreError> {
    if references.is_empty() {
        return Ok(HashMap::new());
    }
    let query = statement(
        "SELECT reference, name, amount, success FROM events WHERE reference = ANY($1)",
        vec![texts(references.iter().cloned())],
    );
    let mut out: HashMap<String, Aggregate> = HashMap::new();
    for row in db.query_all(query).await? {
        let reference: String = row.try_get("", "reference")?;
        let name: String = row.try_get("", "name")?;
        let amount: i64 = row.try_get("", "amount")?;
        let success: bool = row.try_get("", "success")?;
        if let Some(name) = EventName::parse(&name) {
            let total = out.entry(reference).or_default();
            *total = total.with(name, amount, success);
        }
    }
    Ok(out)
}

/// The event insert: rows are numbered in array order (`ORDER BY n`), so the log order is the
/// batch order. Arrays carry no NULLs through sea-query, so the two optional columns come with
/// a presence flag each.
const INSERT: &str = "INSERT INTO events (dedupe_key, reference, psp_reference, name, currency, \
     amount, timestamp_ms, idempotency_key, success, source, payment, recorded_ms) \
     SELECT k, r, p, m, c, a, t, CASE WHEN hi THEN i END, s, o, CASE WHEN hj THEN j END, $13 \
     FROM UNNEST($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[], \
     $6::int8[], $7::int8[], $8::varchar[], $9::bool[], $10::bool[], $11::varchar[], \
     $12::text[], $14::bool[]) WITH ORDINALITY AS u(k, r, p, m, c, a, t, i, hi, s, o, j, hj, n) \
     ORDER BY n RETURNING sequence, dedupe_key";

/// Inserts the events in one statement; returns their sequences in insert order.
pub(super) async fn insert_events<C: ConnectionTrait>(
    db: &C,
    inserts: &[Insert],
) -> Result<Vec<u64>, StoreError> {
    if inserts.is_empty() {
        return Ok(Vec::new());
    }
    let text = |f: &dyn Fn(&Insert) -> String| texts(inserts.iter().map(f));
    let ints = |f: &dyn Fn(&Insert) -> i64| Value::from(inserts.iter().map(f).collect::<Vec<_>>());
    let flags =
        |f: &dyn Fn(&Insert) -> bool| Value::from(inserts.iter().map(f).collect::<Vec<_>>());
    let values = vec![
        text(&|i| i.key.clone()),
        text(&|i| i.event.reference.clone()),
        text(&|i| i.event.psp_reference.clone()),
        text(&|i| i.event.name.as_str().to_owned()),
        text(&|i| i.event.amount.currency.code().to_owned()),
        ints(&|i| i.event.amount.value),
        ints(&|i| i.event.timestamp.timestamp_millis()),
        text(&|i| i.event.idempotency_key.clone().unwrap_or_default()),
        flags(&|i| i.event.idempotency_key.is_some()),
        flags(&|i| i.event.success),
        text(&|i| i.event.source.as_str().to_owned()),
        text(&|i| i.snapshot.clone().unwrap_or_default()),
        Value::from(now_ms()),
        flags(&|i| i.snapshot.is_some()),
    ];
    let rows = db.query_all(statement(INSERT, values)).await?;
    let mut by_key = HashMap::with_capacity(rows.len());
    for row in rows {
        let value: i64 = row.try_get("", "sequence")?;
        let key: String = row.try_get("", "dedupe_key")?;
        by_key.insert(key, sequence(value)?);
    }
    inserts
        .iter()
        .map(|i| {
            by_key
                .get(&i.key)
                .copied()
                .ok_or_else(|| StoreError::Corrupt("an inserted event returned no sequence".into()))
        })
        .collect()
}
