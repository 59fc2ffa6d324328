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
    batch::{self, Insert, Loaded, Stored},
    change::PaymentChange,
    entities::payment,
    now_ms, StoreError,
};
use crate::domain::Aggregate;

/// `sql` with `list` as its one text-array parameter; None for an empty list (nothing to read).
fn any_of(sql: &str, list: &[String]) -> Option<Statement> {
    (!list.is_empty())
        .then(|| Statement::from_sql_and_values(DbBackend::Postgres, sql, [list.to_vec().into()]))
}

/// What the plan needs to know, read with array parameters.
pub(super) async fn load<C: ConnectionTrait>(
    db: &C,
    changes: &[PaymentChange],
) -> Result<Loaded, StoreError> {
    let payments = load_payments(db, &batch::references(changes)).await?;
    let recorded = recorded_keys(db, &batch::keys(changes)).await?;
    let totals = log_totals(db, &batch::with_events(changes, &payments)).await?;
    Ok(Loaded {
        payments,
        recorded,
        totals,
    })
}

async fn load_payments<C: ConnectionTrait>(
    db: &C,
    references: &[String],
) -> Result<HashMap<String, Stored>, StoreError> {
    let Some(query) = any_of(
        "SELECT * FROM payments WHERE reference = ANY($1)",
        references,
    ) else {
        return Ok(HashMap::new());
    };
    let rows = payment::Entity::find().from_raw_sql(query).all(db).await?;
    rows.into_iter().map(Stored::from_model).collect()
}

async fn recorded_keys<C: ConnectionTrait>(
    db: &C,
    keys: &[String],
) -> Result<HashSet<String>, StoreError> {
    let mut out = HashSet::new();
    if let Some(query) = any_of(
        "SELECT dedupe_key FROM events WHERE dedupe_key = ANY($1)",
        keys,
    ) {
        for row in db.query_all(query).await? {
            out.insert(row.try_get::<String>("", "dedupe_key")?);
        }
    }
    Ok(out)
}

/// Sums of the recorded events of these payments, from three columns only.
async fn log_totals<C: ConnectionTrait>(
    db: &C,
    references: &[String],
) -> Result<HashMap<String, Aggregate>, StoreError> {
    let mut out = HashMap::new();
    let sql = "SELECT reference, name, amount, success FROM events WHERE reference = ANY($1)";
    if let Some(query) = any_of(sql, references) {
        for row in db.query_all(query).await? {
            let name: String = row.try_get("", "name")?;
            batch::add_to_total(
                &mut out,
                row.try_get("", "reference")?,
                &name,
                row.try_get("", "amount")?,
                row.try_get("", "success")?,
            );
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

/// One array parameter: `column` of every insert.
fn array<T>(inserts: &[Insert], column: impl Fn(&Insert) -> T) -> Value
where
    Vec<T>: Into<Value>,
{
    inserts.iter().map(column).collect::<Vec<T>>().into()
}

/// Inserts the events in one statement; returns their sequences in insert order.
pub(super) async fn insert_events<C: ConnectionTrait>(
    db: &C,
    inserts: &[Insert],
) -> Result<Vec<u64>, StoreError> {
    if inserts.is_empty() {
        return Ok(Vec::new());
    }
    let values = vec![
        array(inserts, |i| i.key.clone()),
        array(inserts, |i| i.event.reference.clone()),
        array(inserts, |i| i.event.psp_reference.clone()),
        array(inserts, |i| i.event.name.as_str().to_owned()),
        array(inserts, |i| i.event.amount.currency.code().to_owned()),
        array(inserts, |i| i.event.amount.value),
        array(inserts, |i| i.event.timestamp.timestamp_millis()),
        array(inserts, |i| {
            i.event.idempotency_key.clone().unwrap_or_default()
        }),
        array(inserts, |i| i.event.idempotency_key.is_some()),
        array(inserts, |i| i.event.success),
        array(inserts, |i| i.event.source.as_str().to_owned()),
        array(inserts, |i| i.snapshot.clone().unwrap_or_default()),
        Value::from(now_ms()),
        array(inserts, |i| i.snapshot.is_some()),
    ];
    let insert = Statement::from_sql_and_values(DbBackend::Postgres, INSERT, values);
    let mut by_key = HashMap::with_capacity(inserts.len());
    batch::note_returned(db.query_all(insert).await?, &mut by_key)?;
    batch::in_insert_order(inserts, &by_key)
}
