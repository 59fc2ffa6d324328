//! PostgreSQL's form of the group commit's reads and insert, written as the text of simple-query
//! messages (`pg_txn` sends them): the append lock and the three reads go in one message, the
//! event insert, its `NOTIFY` and `COMMIT` in another, so a batch of webhooks costs two round
//! trips. A simple query carries no bound parameters, so every value is written as a literal
//! (`push_text` is the one place that quotes text, `push_array` the one that writes arrays).
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

use super::{
    batch::{self, Insert, Loaded, Stored},
    change::PaymentChange,
    entities::payment,
    now_ms, StoreError, EVENT_LOG_LOCK, NOTIFY_CHANNEL,
};

/// Appends `value` as a PostgreSQL text literal that reads back exactly whatever
/// `standard_conforming_strings` and `backslash_quote` say: an escape string (`E'…'`) with
/// backslashes doubled and quotes doubled. PostgreSQL text cannot hold NUL: such a value is
/// refused (the job alone fails, see `StoreError::is_refusal`).
fn push_text(sql: &mut String, value: &str) -> Result<(), StoreError> {
    if value.contains('\0') {
        return Err(StoreError::Corrupt(
            "a text with a NUL character cannot be stored in PostgreSQL".into(),
        ));
    }
    sql.push_str("E'");
    for c in value.chars() {
        match c {
            '\\' => sql.push_str("\\\\"),
            '\'' => sql.push_str("''"),
            c => sql.push(c),
        }
    }
    sql.push('\'');
    Ok(())
}

/// One element of an array literal (`{…}`), in PostgreSQL's array syntax.
trait Element {
    fn write_to(&self, array: &mut String);
}

impl Element for str {
    /// Quoted, with `"` and `\` escaped by a backslash (so `NULL` or a comma stay text).
    fn write_to(&self, array: &mut String) {
        array.push('"');
        for c in self.chars() {
            if matches!(c, '"' | '\\') {
                array.push('\\');
            }
            array.push(c);
        }
        array.push('"');
    }
}

impl Element for String {
    fn write_to(&self, array: &mut String) {
        self.as_str().write_to(array)
    }
}

impl Element for i64 {
    fn write_to(&self, array: &mut String) {
        let _ = write!(array, "{self}");
    }
}

impl Element for bool {
    fn write_to(&self, array: &mut String) {
        array.push(if *self { 't' } else { 'f' });
    }
}

impl<T: Element + ?Sized> Element for &T {
    fn write_to(&self, array: &mut String) {
        (**self).write_to(array)
    }
}

impl<T: Element + ?Sized> Element for Option<&T> {
    fn write_to(&self, array: &mut String) {
        match self {
            Some(value) => value.write_to(array),
            None => array.push_str("NULL"),
        }
    }
}

/// Appends the items as ONE array literal, `E'{…}'::{cast}`: PostgreSQL reads it with one call
/// of its array parser, where `ARRAY[…]` of one literal per item is parsed and coerced item by
/// item (8 % more server time per batch of 30 events, measured with psql).
fn push_array<'a, T, E: Element>(
    sql: &mut String,
    items: &'a [T],
    element: impl Fn(&'a T) -> E,
    cast: &str,
) -> Result<(), StoreError> {
    let mut array = String::with_capacity(items.len() * 48 + 2);
    array.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            array.push(',');
        }
        element(item).write_to(&mut array);
    }
    array.push('}');
    push_text(sql, &array)?;
    let _ = write!(sql, "::{cast}");
    Ok(())
}

/// The reads a batch needs, after the append lock, as the statements of one message; `read`
/// makes them into what the plan needs.
pub(super) struct Reads {
    pub sql: String,
    /// Whether the lock statement leads the message (when BEGIN goes with it).
    locks: bool,
}

impl Reads {
    /// The known payments, the dedupe keys already recorded, and the log totals of the known
    /// payments that get events (`batch::with_events`, decided by PostgreSQL from the first
    /// read's table, in the same transaction).
    pub fn new(changes: &[PaymentChange], lock: bool) -> Result<Self, StoreError> {
        let mut sql = String::with_capacity(1024);
        if lock {
            let _ = write!(sql, "SELECT pg_advisory_xact_lock({EVENT_LOG_LOCK}); ");
        }
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
            &references_with_events(changes),
            |r| r,
            "varchar[]",
        )?;
        sql.push_str(")))");
        Ok(Self { sql, locks: lock })
    }

    /// What the plan needs, from the rows of this message's statements.
    pub fn read(&self, statements: Vec<Vec<PgRow>>) -> Result<Loaded, StoreError> {
        let mut statements = statements.into_iter().skip(usize::from(self.locks));
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

/// The distinct references of changes with events (the known ones among them need totals).
fn references_with_events(changes: &[PaymentChange]) -> Vec<String> {
    let distinct: HashSet<&str> = changes
        .iter()
        .filter(|c| !c.events.is_empty())
        .map(|c| c.reference.as_str())
        .collect();
    distinct.into_iter().map(str::to_owned).collect()
}

/// The event insert and the commit notice, for the message that ends with `COMMIT`. Rows are
/// numbered in array order (`ORDER BY n`), so the log order is the batch order; `currval` is
/// this session's last sequence, the newest event of the batch. `inserts` is not empty.
pub(super) fn insert_and_notify(inserts: &[Insert], origin: &str) -> Result<String, StoreError> {
    let mut sql = String::with_capacity(256 + inserts.len() * 512);
    sql.push_str(
        "INSERT INTO events (dedupe_key, reference, psp_reference, name, currency, amount, \
         timestamp_ms, idempotency_key, success, source, payment, recorded_ms) \
         SELECT k, r, p, m, c, a, t, i, s, o, j, ",
    );
    let _ = write!(sql, "{} FROM UNNEST(", now_ms());
    let text = "varchar[]";
    push_array(&mut sql, inserts, |i| i.key.as_str(), text)?;
    sql.push(',');
    push_array(&mut sql, inserts, |i| i.event.reference.as_str(), text)?;
    sql.push(',');
    push_array(&mut sql, inserts, |i| i.event.psp_reference.as_str(), text)?;
    sql.push(',');
    push_array(&mut sql, inserts, |i| i.event.name.as_str(), text)?;
    sql.push(',');
    push_array(&mut sql, inserts, |i| i.event.amount.currency.code(), text)?;
    sql.push(',');
    push_array(&mut sql, inserts, |i| i.event.amount.value, "int8[]")?;
    sql.push(',');
    push_array(
        &mut sql,
        inserts,
        |i| i.event.timestamp.timestamp_millis(),
        "int8[]",
    )?;
    sql.push(',');
    push_array(
        &mut sql,
        inserts,
        |i| i.event.idempotency_key.as_deref(),
        text,
    )?;
    sql.push(',');
    push_array(&mut sql, inserts, |i| i.event.success, "bool[]")?;
    sql.push(',');
    push_array(&mut sql, inserts, |i| i.event.source.as_str(), text)?;
    sql.push(',');
    push_array(&mut sql, inserts, |i| i.snapshot.as_deref(), "text[]")?;
    sql.push_str(
        ") WITH ORDINALITY AS u(k, r, p, m, c, a, t, i, s, o, j, n) \
         ORDER BY n RETURNING sequence, dedupe_key; ",
    );
    let _ = write!(
        sql,
        "SELECT pg_notify('{NOTIFY_CHANNEL}', \
         currval(pg_get_serial_sequence('events', 'sequence'))::text || "
    );
    push_text(&mut sql, &format!(" {origin}"))?;
    sql.push(')');
    Ok(sql)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use sqlx::Row;

    use super::{push_array, push_text};

    const AWKWARD: [&str; 12] = [
        "plain",
        "",
        "NULL",
        "{braces}, \"a\",b",
        "  padded  ",
        "it's",
        "back\\slash",
        "ends with a backslash\\",
        "\\'; DROP TABLE events; --",
        "E'x' || 'y'",
        "$$ dollar $$ and \"double\" quotes",
        "line\nbreak\ttab, æøå, 🚕",
    ];

    #[test]
    fn text_with_nul_is_refused_not_sent() {
        let mut sql = String::new();
        let e = push_text(&mut sql, "a\0b").unwrap_err();
        assert!(e.is_refusal(), "only that job fails: {e}");
        let e = push_array(&mut sql, &["ok", "a\0b"], |s| *s, "text[]").unwrap_err();
        assert!(e.is_refusal(), "only that job fails: {e}");
        assert!(sql.is_empty());
    }

    #[tokio::test]
    async fn postgres_reads_every_literal_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (store, url) = crate::test_support::fresh_store(&dir).await;
        if !url.starts_with("postgres") {
            return;
        }
        let pool = store.postgres_pool().unwrap();
        for settings in [
            "SET standard_conforming_strings = on",
            "SET standard_conforming_strings = off; SET backslash_quote = off",
        ] {
            let mut sql = "SELECT ".to_owned();
            push_array(&mut sql, &AWKWARD, |s| *s, "text[]").unwrap();
            for s in AWKWARD {
                sql.push_str(", ");
                push_text(&mut sql, s).unwrap();
            }
            let mut conn = pool.acquire().await.unwrap();
            sqlx::raw_sql(settings).execute(&mut *conn).await.unwrap();
            // Read back in binary (the extended protocol), not through a text array parser.
            let row = sqlx::query(&sql)
                .fetch_one(&mut *conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let array: Vec<String> = row.get(0);
            assert_eq!(array, AWKWARD, "{settings}");
            for (i, s) in AWKWARD.iter().enumerate() {
                assert_eq!(row.get::<String, _>(i + 1), *s, "{settings}");
            }
            conn.close().await.unwrap();
        }
    }
}
