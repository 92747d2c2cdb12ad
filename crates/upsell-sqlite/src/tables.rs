//! Local DynamoDB tables for the state machines' direct service integrations
//! (`arn:aws:states:::dynamodb:*`): items stored as DynamoDB JSON under their table name,
//! partition key and sort key.
//!
//! This module only stores and orders items; the getItem and putItem integrations and the
//! condition subset they use live in `upsell-local` (`dynamodb`), which calls
//! [`TableStore::modify`] to run a read-check-write atomically. Keys keep DynamoDB's order: strings and binaries by bytes,
//! numbers numerically. A table without a sort key stores the empty string as its sort key.
//!
//! Adapters that keep their data in these tables (so the state machines see the same items as
//! in AWS) also get [`TableStore::transact`] (several items in one transaction, like
//! `TransactWriteItems`) and secondary indexes over string attributes
//! ([`TableStore::ensure_index`], [`TableStore::query_index`]), like DynamoDB GSIs.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;
use upsell_core::ports::PortError;

use crate::{SharedConnection, db_err, open_connection};

/// One key attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    /// `S`
    S(String),
    /// `N`, kept as a number so it sorts numerically.
    N(f64),
    /// `B`, raw bytes.
    B(Vec<u8>),
}

impl KeyValue {
    fn to_sql(&self) -> SqlValue {
        match self {
            KeyValue::S(s) => SqlValue::Text(s.clone()),
            KeyValue::N(n) => SqlValue::Real(*n),
            KeyValue::B(b) => SqlValue::Blob(b.clone()),
        }
    }
}

/// The primary key of an item.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemKey {
    /// Partition key value.
    pub pk: KeyValue,
    /// Sort key value (`None` for tables without one).
    pub sk: Option<KeyValue>,
}

impl ItemKey {
    fn sk_sql(&self) -> SqlValue {
        self.sk
            .as_ref()
            .map_or(SqlValue::Text(String::new()), KeyValue::to_sql)
    }
}

/// What [`TableStore::modify`] does after looking at the current item.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Leave the item as it is.
    Keep,
    /// Store this item (DynamoDB JSON map).
    Put(Value),
    /// Remove the item.
    Delete,
}

/// The item before and after a modification.
#[derive(Debug, Clone, PartialEq)]
pub struct Modified {
    /// The item before (`None` if absent).
    pub old: Option<Value>,
    /// The item after (`None` if absent).
    pub new: Option<Value>,
}

/// Which sort keys a query selects.
#[derive(Debug, Clone, PartialEq)]
pub enum SortCondition {
    /// Every item of the partition.
    Any,
    /// `sk = v`
    Eq(KeyValue),
    /// `sk < v`
    Lt(KeyValue),
    /// `sk <= v`
    Le(KeyValue),
    /// `sk > v`
    Gt(KeyValue),
    /// `sk >= v`
    Ge(KeyValue),
    /// `sk BETWEEN a AND b` (inclusive)
    Between(KeyValue, KeyValue),
    /// `begins_with(sk, v)` for strings and binaries.
    BeginsWith(KeyValue),
}

/// A query over one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Partition key value.
    pub pk: KeyValue,
    /// Sort key condition.
    pub sort: SortCondition,
    /// `ScanIndexForward` (ascending when true).
    pub forward: bool,
    /// At most this many items.
    pub limit: Option<usize>,
    /// Continue after this sort key (`ExclusiveStartKey`).
    pub start_after: Option<KeyValue>,
}

/// A query over one partition of a secondary index on two string attributes (`S`), like a
/// DynamoDB GSI query. Items without the partition attribute are not in the index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexQuery {
    /// The index's partition attribute (e.g. `gsi1pk`).
    pub pk_attr: String,
    /// Its value.
    pub pk: String,
    /// The index's sort attribute (e.g. `gsi1sk`).
    pub sk_attr: String,
    /// Ascending when true.
    pub forward: bool,
    /// At most this many items.
    pub limit: Option<usize>,
    /// Continue after this sort attribute value.
    pub start_after: Option<String>,
}

impl IndexQuery {
    /// Every item of partition `pk` of the index (`pk_attr`, `sk_attr`), ascending.
    pub fn new(pk_attr: &str, pk: impl Into<String>, sk_attr: &str) -> Self {
        IndexQuery {
            pk_attr: pk_attr.to_owned(),
            pk: pk.into(),
            sk_attr: sk_attr.to_owned(),
            forward: true,
            limit: None,
            start_after: None,
        }
    }
}

/// The SQL expression of string attribute `attr` of an item; the attribute name is checked so
/// that it can be part of the SQL text (an expression index is only used when the query spells
/// the very same expression).
fn attr_expr(attr: &str) -> Result<String, PortError> {
    if attr.is_empty() || !attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(PortError::Invalid(format!(
            "index attribute name {attr:?} must be ASCII letters, digits or '_'"
        )));
    }
    Ok(format!("json_extract(item, '$.{attr}.S')"))
}

/// Reads and writes several items in one immediate transaction (see [`TableStore::transact`]).
pub struct Transaction<'a> {
    tx: rusqlite::Transaction<'a>,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transaction")
    }
}

impl Transaction<'_> {
    /// The item with this key, as this transaction sees it.
    pub fn get(&self, table: &str, key: &ItemKey) -> Result<Option<Value>, PortError> {
        get_item(&self.tx, table, key)
    }

    /// Items of one partition, as this transaction sees them.
    pub fn query(&self, table: &str, query: &Query) -> Result<Vec<Value>, PortError> {
        query_items(&self.tx, table, query)
    }

    /// Stores an item, replacing any item with the same key.
    pub fn put(&self, table: &str, key: &ItemKey, item: &Value) -> Result<(), PortError> {
        put_item(&self.tx, table, key, item)
    }

    /// Removes an item.
    pub fn delete(&self, table: &str, key: &ItemKey) -> Result<(), PortError> {
        delete_item(&self.tx, table, key)
    }
}

/// DynamoDB-like tables in SQLite.
pub struct TableStore {
    conn: SharedConnection,
}

impl std::fmt::Debug for TableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableStore")
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ddb_items (
    tbl  TEXT NOT NULL,
    pk   NOT NULL,
    sk   NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (tbl, pk, sk)
) WITHOUT ROWID;
";

impl TableStore {
    /// Opens (creating) the store in the SQLite file at `path`.
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Self::with_connection(open_connection(path)?)
    }

    /// A store that lives in memory (tests).
    pub fn in_memory() -> Result<Self, PortError> {
        Self::with_connection(Connection::open_in_memory().map_err(db_err)?)
    }

    /// The store on a connection other stores of this process share (creates its table).
    pub fn shared(conn: SharedConnection) -> Result<Self, PortError> {
        conn.lock()
            .map_err(|_| PortError::Other("table store lock poisoned".into()))?
            .execute_batch(SCHEMA)
            .map_err(db_err)?;
        Ok(TableStore { conn })
    }

    fn with_connection(conn: Connection) -> Result<Self, PortError> {
        Self::shared(Arc::new(Mutex::new(conn)))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, PortError> {
        self.conn
            .lock()
            .map_err(|_| PortError::Other("table store lock poisoned".into()))
    }

    /// The item with this key.
    pub fn get(&self, table: &str, key: &ItemKey) -> Result<Option<Value>, PortError> {
        let conn = self.lock()?;
        get_item(&conn, table, key)
    }

    /// Stores an item, replacing any item with the same key; returns the old one.
    pub fn put(
        &self,
        table: &str,
        key: &ItemKey,
        item: &Value,
    ) -> Result<Option<Value>, PortError> {
        self.modify(table, key, |_| Ok::<_, PortError>(Write::Put(item.clone())))?
            .map(|m| m.old)
    }

    /// Stores `item` unless an item with this key exists (the condition
    /// `attribute_not_exists(pk)`); returns whether it was stored. One statement, atomic also
    /// against other processes, and the existing item is neither read nor parsed.
    pub fn put_if_absent(
        &self,
        table: &str,
        key: &ItemKey,
        item: &Value,
    ) -> Result<bool, PortError> {
        let conn = self.lock()?;
        let n = conn
            .prepare_cached(
                "INSERT INTO ddb_items (tbl, pk, sk, item) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tbl, pk, sk) DO NOTHING",
            )
            .map_err(db_err)?
            .execute(params![
                table,
                key.pk.to_sql(),
                key.sk_sql(),
                item_text(item)?
            ])
            .map_err(db_err)?;
        Ok(n == 1)
    }

    /// Removes an item; returns it.
    pub fn delete(&self, table: &str, key: &ItemKey) -> Result<Option<Value>, PortError> {
        self.modify(table, key, |_| Ok::<_, PortError>(Write::Delete))?
            .map(|m| m.old)
    }

    /// Reads the item, lets `decide` choose what to write, and writes it, all in one
    /// immediate transaction (so a condition checked in `decide` holds when the write happens,
    /// also against other processes using the same file). An `Err` from `decide` writes nothing
    /// and is returned as the inner error.
    pub fn modify<E>(
        &self,
        table: &str,
        key: &ItemKey,
        decide: impl FnOnce(Option<&Value>) -> Result<Write, E>,
    ) -> Result<Result<Modified, E>, PortError> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let old = get_item(&tx, table, key)?;
        let write = match decide(old.as_ref()) {
            Ok(w) => w,
            Err(e) => return Ok(Err(e)),
        };
        let new = match write {
            Write::Keep => old.clone(),
            Write::Put(item) => {
                put_item(&tx, table, key, &item)?;
                Some(item)
            }
            Write::Delete => {
                delete_item(&tx, table, key)?;
                None
            }
        };
        tx.commit().map_err(db_err)?;
        Ok(Ok(Modified { old, new }))
    }

    /// Runs `work` in one immediate transaction: its reads see a consistent state and its
    /// writes happen together (also against other processes using the same file) when it
    /// returns `Ok`; an `Err` writes nothing and is returned.
    pub fn transact<T, E: From<PortError>>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.lock()?;
        let tx = Transaction {
            tx: conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?,
        };
        let out = work(&tx)?;
        tx.tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Makes SQLite count every write to `table`, by any connection or process and through
    /// any path (a trigger per statement kind), so that [`TableStore::table_version`] tells a
    /// reader whether what it cached from the table is still current.
    pub fn track_versions(&self, table: &str) -> Result<(), PortError> {
        if table.is_empty()
            || !table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(PortError::Invalid(format!(
                "table name {table:?}: only letters, digits, '_', '-' and '.' can be tracked"
            )));
        }
        // Hex keeps trigger names apart for names that differ only in punctuation.
        let name: String = table.bytes().map(|b| format!("{b:02x}")).collect();
        // The row exists before any trigger runs: a trigger's own INSERT OR IGNORE would take
        // the conflict policy of the statement that fired it.
        let bump =
            format!("UPDATE ddb_table_versions SET version = version + 1 WHERE tbl = '{table}';");
        let conn = self.lock()?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS ddb_table_versions (
                 tbl     TEXT PRIMARY KEY,
                 version INTEGER NOT NULL
             );
             INSERT OR IGNORE INTO ddb_table_versions (tbl, version) VALUES ('{table}', 0);
             CREATE TRIGGER IF NOT EXISTS ddb_v_ins_{name} AFTER INSERT ON ddb_items
                 WHEN new.tbl = '{table}' BEGIN {bump} END;
             CREATE TRIGGER IF NOT EXISTS ddb_v_upd_{name} AFTER UPDATE ON ddb_items
                 WHEN new.tbl = '{table}' OR old.tbl = '{table}' BEGIN {bump} END;
             CREATE TRIGGER IF NOT EXISTS ddb_v_del_{name} AFTER DELETE ON ddb_items
                 WHEN old.tbl = '{table}' BEGIN {bump} END;"
        ))
        .map_err(db_err)
    }

    /// How many writes `table` has seen since [`TableStore::track_versions`] (0 before any).
    pub fn table_version(&self, table: &str) -> Result<i64, PortError> {
        let conn = self.lock()?;
        conn.prepare_cached("SELECT version FROM ddb_table_versions WHERE tbl = ?1")
            .map_err(db_err)?
            .query_row([table], |r| r.get(0))
            .optional()
            .map(|v| v.unwrap_or(0))
            .map_err(db_err)
    }

    /// Creates (once per file) the secondary index on the string attributes `pk_attr` and
    /// `sk_attr` that [`TableStore::query_index`] reads; without it those queries still work,
    /// by scanning the table.
    pub fn ensure_index(&self, pk_attr: &str, sk_attr: &str) -> Result<(), PortError> {
        let (pk, sk) = (attr_expr(pk_attr)?, attr_expr(sk_attr)?);
        let conn = self.lock()?;
        conn.execute_batch(&format!(
            "CREATE INDEX IF NOT EXISTS ddb_idx_{pk_attr}_{sk_attr} ON ddb_items (tbl, {pk}, {sk})"
        ))
        .map_err(db_err)
    }

    /// Items of one partition of a secondary index, in sort-attribute order.
    pub fn query_index(&self, table: &str, query: &IndexQuery) -> Result<Vec<Value>, PortError> {
        let (sql, args) = index_sql(table, query)?;
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(0))
            .map_err(db_err)?;
        rows.map(|r| parse_item(&r.map_err(db_err)?)).collect()
    }

    /// SQLite's query plan for [`TableStore::query_index`] (tests check that it uses the index).
    #[cfg(test)]
    pub(crate) fn explain_index_query(
        &self,
        table: &str,
        query: &IndexQuery,
    ) -> Result<String, PortError> {
        let (sql, args) = index_sql(table, query)?;
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .map_err(db_err)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .map_err(db_err)?;
        let lines: Vec<String> = rows.collect::<Result<_, _>>().map_err(db_err)?;
        Ok(lines.join("\n"))
    }

    /// How many items each partition of the index on `pk_attr` (and `sk_attr`) holds, by
    /// partition value.
    pub fn count_index(
        &self,
        table: &str,
        pk_attr: &str,
        sk_attr: &str,
    ) -> Result<Vec<(String, u64)>, PortError> {
        let (pk, sk) = (attr_expr(pk_attr)?, attr_expr(sk_attr)?);
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {pk}, COUNT({sk}) FROM ddb_items WHERE tbl = ?1 AND {pk} IS NOT NULL
                 GROUP BY {pk} ORDER BY {pk}"
            ))
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![table], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(db_err)?;
        rows.map(|r| {
            let (k, n) = r.map_err(db_err)?;
            Ok((k, u64::try_from(n).unwrap_or(0)))
        })
        .collect()
    }

    /// Items of one partition in sort-key order, filtered by the sort condition.
    pub fn query(&self, table: &str, query: &Query) -> Result<Vec<Value>, PortError> {
        let conn = self.lock()?;
        query_items(&conn, table, query)
    }

    /// Every item of a table in key order (at most `limit`).
    pub fn scan(&self, table: &str, limit: Option<usize>) -> Result<Vec<Value>, PortError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached("SELECT item FROM ddb_items WHERE tbl = ?1 ORDER BY pk, sk LIMIT ?2")
            .map_err(db_err)?;
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = stmt
            .query_map(params![table, limit], |r| r.get::<_, String>(0))
            .map_err(db_err)?;
        rows.map(|r| parse_item(&r.map_err(db_err)?)).collect()
    }
}

fn index_sql(table: &str, query: &IndexQuery) -> Result<(String, Vec<SqlValue>), PortError> {
    let (pk, sk) = (attr_expr(&query.pk_attr)?, attr_expr(&query.sk_attr)?);
    let (op, order) = if query.forward {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    let mut sql = format!("SELECT item FROM ddb_items WHERE tbl = ?1 AND {pk} = ?2");
    let mut args = vec![
        SqlValue::Text(table.into()),
        SqlValue::Text(query.pk.clone()),
    ];
    if let Some(after) = &query.start_after {
        sql.push_str(&format!(" AND {sk} {op} ?3"));
        args.push(SqlValue::Text(after.clone()));
    }
    sql.push_str(&format!(" ORDER BY {sk} {order}"));
    if let Some(limit) = query.limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    Ok((sql, args))
}

fn put_item(conn: &Connection, table: &str, key: &ItemKey, item: &Value) -> Result<(), PortError> {
    conn.prepare_cached(
        "INSERT INTO ddb_items (tbl, pk, sk, item) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tbl, pk, sk) DO UPDATE SET item = excluded.item",
    )
    .map_err(db_err)?
    .execute(params![
        table,
        key.pk.to_sql(),
        key.sk_sql(),
        item_text(item)?
    ])
    .map_err(db_err)?;
    Ok(())
}

/// An item as stored: compact JSON.
fn item_text(item: &Value) -> Result<String, PortError> {
    serde_json::to_string(item)
        .map_err(|e| PortError::Invalid(format!("item does not serialise: {e}")))
}

fn delete_item(conn: &Connection, table: &str, key: &ItemKey) -> Result<(), PortError> {
    conn.prepare_cached("DELETE FROM ddb_items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
        .map_err(db_err)?
        .execute(params![table, key.pk.to_sql(), key.sk_sql()])
        .map_err(db_err)?;
    Ok(())
}

fn query_items(conn: &Connection, table: &str, query: &Query) -> Result<Vec<Value>, PortError> {
    let mut sql = String::from("SELECT item FROM ddb_items WHERE tbl = ?1 AND pk = ?2");
    let mut args: Vec<SqlValue> = vec![SqlValue::Text(table.into()), query.pk.to_sql()];
    let mut arg = |sql: &mut String, clause: &str, v: &KeyValue| {
        args.push(v.to_sql());
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    match &query.sort {
        SortCondition::Any => {}
        SortCondition::Eq(v) => arg(&mut sql, " AND sk = ?", v),
        SortCondition::Lt(v) => arg(&mut sql, " AND sk < ?", v),
        SortCondition::Le(v) => arg(&mut sql, " AND sk <= ?", v),
        SortCondition::Gt(v) => arg(&mut sql, " AND sk > ?", v),
        SortCondition::Ge(v) => arg(&mut sql, " AND sk >= ?", v),
        SortCondition::Between(a, b) => {
            arg(&mut sql, " AND sk >= ?", a);
            arg(&mut sql, " AND sk <= ?", b);
        }
        SortCondition::BeginsWith(v) => {
            arg(&mut sql, " AND sk >= ?", v);
            arg(&mut sql, " AND instr(sk, ?) = 1", v);
        }
    }
    if let Some(after) = &query.start_after {
        let op = if query.forward { ">" } else { "<" };
        arg(&mut sql, &format!(" AND sk {op} ?"), after);
    }
    sql.push_str(if query.forward {
        " ORDER BY sk ASC"
    } else {
        " ORDER BY sk DESC"
    });
    if let Some(limit) = query.limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(0))
        .map_err(db_err)?;
    rows.map(|r| parse_item(&r.map_err(db_err)?)).collect()
}

fn get_item(conn: &Connection, table: &str, key: &ItemKey) -> Result<Option<Value>, PortError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT item FROM ddb_items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
        .map_err(db_err)?
        .query_row(params![table, key.pk.to_sql(), key.sk_sql()], |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    text.as_deref().map(parse_item).transpose()
}

fn parse_item(text: &str) -> Result<Value, PortError> {
    serde_json::from_str(text)
        .map_err(|e| PortError::Other(format!("stored item is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: &str) -> KeyValue {
        KeyValue::S(v.into())
    }

    fn key(pk: &str, sk: &str) -> ItemKey {
        ItemKey {
            pk: s(pk),
            sk: Some(s(sk)),
        }
    }

    fn item(pk: &str, sk: &str) -> Value {
        json!({"pk": {"S": pk}, "sk": {"S": sk}})
    }

    fn store() -> TableStore {
        let t = TableStore::in_memory().unwrap();
        for sk in ["a", "ab", "abc", "b", "c"] {
            t.put("T", &key("P", sk), &item("P", sk)).unwrap();
        }
        t.put("T", &key("Q", "a"), &item("Q", "a")).unwrap();
        t.put("Other", &key("P", "a"), &item("P", "z")).unwrap();
        t
    }

    fn sks(items: &[Value]) -> Vec<&str> {
        items
            .iter()
            .map(|i| i["sk"]["S"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn get_put_delete_keep_tables_apart() {
        let t = store();
        assert_eq!(t.get("T", &key("P", "a")).unwrap(), Some(item("P", "a")));
        assert_eq!(
            t.get("Other", &key("P", "a")).unwrap(),
            Some(item("P", "z"))
        );
        assert_eq!(t.get("T", &key("P", "zz")).unwrap(), None);
        let old = t.put("T", &key("P", "a"), &json!({"v": 1})).unwrap();
        assert_eq!(old, Some(item("P", "a")));
        assert_eq!(
            t.delete("T", &key("P", "a")).unwrap(),
            Some(json!({"v": 1}))
        );
        assert_eq!(t.get("T", &key("P", "a")).unwrap(), None);
        let no_sk = ItemKey {
            pk: s("only"),
            sk: None,
        };
        t.put("H", &no_sk, &json!({"x": 1})).unwrap();
        assert_eq!(t.get("H", &no_sk).unwrap(), Some(json!({"x": 1})));
    }

    #[test]
    fn put_if_absent_keeps_the_existing_item() {
        let t = store();
        assert!(
            !t.put_if_absent("T", &key("P", "a"), &json!({"new": 1}))
                .unwrap()
        );
        assert_eq!(t.get("T", &key("P", "a")).unwrap(), Some(item("P", "a")));
        assert!(
            t.put_if_absent("T", &key("P", "new"), &json!({"new": 1}))
                .unwrap()
        );
        assert_eq!(
            t.get("T", &key("P", "new")).unwrap(),
            Some(json!({"new": 1}))
        );
        // Same key in another table is another item.
        assert!(
            t.put_if_absent("Other", &key("P", "new"), &json!({"o": 1}))
                .unwrap()
        );
    }

    #[test]
    fn modify_writes_nothing_when_decide_fails() {
        let t = store();
        let r = t
            .modify("T", &key("P", "a"), |old| {
                if old.is_some() {
                    Err("exists")
                } else {
                    Ok(Write::Put(json!({})))
                }
            })
            .unwrap();
        assert_eq!(r, Err("exists"));
        assert_eq!(t.get("T", &key("P", "a")).unwrap(), Some(item("P", "a")));
        let r = t
            .modify("T", &key("P", "new"), |old| {
                if old.is_some() {
                    Err("exists")
                } else {
                    Ok(Write::Put(json!({"n": 1})))
                }
            })
            .unwrap()
            .unwrap();
        assert_eq!(
            r,
            Modified {
                old: None,
                new: Some(json!({"n": 1}))
            }
        );
    }

    #[test]
    fn queries_select_and_order_by_sort_key() {
        let t = store();
        let q = |sort: SortCondition, forward: bool, limit: Option<usize>, after: Option<&str>| {
            let items = t
                .query(
                    "T",
                    &Query {
                        pk: s("P"),
                        sort,
                        forward,
                        limit,
                        start_after: after.map(s),
                    },
                )
                .unwrap();
            sks(&items)
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            q(SortCondition::Any, true, None, None),
            ["a", "ab", "abc", "b", "c"]
        );
        assert_eq!(q(SortCondition::Any, false, Some(2), None), ["c", "b"]);
        assert_eq!(
            q(SortCondition::BeginsWith(s("ab")), true, None, None),
            ["ab", "abc"]
        );
        assert_eq!(
            q(SortCondition::Between(s("ab"), s("b")), true, None, None),
            ["ab", "abc", "b"]
        );
        assert_eq!(q(SortCondition::Gt(s("b")), true, None, None), ["c"]);
        assert_eq!(q(SortCondition::Le(s("ab")), true, None, None), ["a", "ab"]);
        assert_eq!(q(SortCondition::Eq(s("b")), true, None, None), ["b"]);
        assert_eq!(
            q(SortCondition::Any, true, Some(2), Some("ab")),
            ["abc", "b"]
        );
        assert_eq!(q(SortCondition::Any, false, None, Some("ab")), ["a"]);
        assert_eq!(t.scan("T", None).unwrap().len(), 6);
    }

    #[test]
    fn number_sort_keys_sort_numerically() {
        let t = TableStore::in_memory().unwrap();
        for n in [10.0, 9.0, 100.0, -1.5] {
            let k = ItemKey {
                pk: s("P"),
                sk: Some(KeyValue::N(n)),
            };
            t.put("N", &k, &json!({"n": n})).unwrap();
        }
        let items = t
            .query(
                "N",
                &Query {
                    pk: s("P"),
                    sort: SortCondition::Ge(KeyValue::N(9.0)),
                    forward: true,
                    limit: None,
                    start_after: None,
                },
            )
            .unwrap();
        let ns: Vec<f64> = items.iter().map(|i| i["n"].as_f64().unwrap()).collect();
        assert_eq!(ns, [9.0, 10.0, 100.0]);
    }

    #[test]
    fn a_transaction_writes_all_or_nothing() {
        let t = store();
        let r: Result<(), PortError> = t.transact(|tx| {
            tx.put("T", &key("P", "a"), &json!({"changed": true}))?;
            tx.delete("T", &key("P", "b"))?;
            // Reads see the transaction's own writes.
            assert_eq!(tx.get("T", &key("P", "b"))?, None);
            assert_eq!(
                tx.query(
                    "T",
                    &Query {
                        pk: s("P"),
                        sort: SortCondition::Any,
                        forward: true,
                        limit: None,
                        start_after: None,
                    }
                )?
                .len(),
                4
            );
            Err(PortError::Conflict("changed my mind".into()))
        });
        assert!(matches!(r, Err(PortError::Conflict(_))));
        assert_eq!(t.get("T", &key("P", "a")).unwrap(), Some(item("P", "a")));
        assert_eq!(t.get("T", &key("P", "b")).unwrap(), Some(item("P", "b")));

        t.transact(|tx| {
            tx.put("T", &key("P", "a"), &json!({"changed": true}))?;
            tx.delete("T", &key("P", "b"))
        })
        .unwrap();
        assert_eq!(
            t.get("T", &key("P", "a")).unwrap(),
            Some(json!({"changed": true}))
        );
        assert_eq!(t.get("T", &key("P", "b")).unwrap(), None);
    }

    #[test]
    fn index_queries_select_one_partition_in_sort_attribute_order() {
        let t = TableStore::in_memory().unwrap();
        t.ensure_index("gpk", "gsk").unwrap();
        let put = |tbl: &str, pk: &str, g: Option<(&str, &str)>| {
            let mut it = item(pk, "R");
            if let Some((gpk, gsk)) = g {
                it["gpk"] = json!({"S": gpk});
                it["gsk"] = json!({"S": gsk});
            }
            t.put(tbl, &key(pk, "R"), &it).unwrap();
        };
        put("T", "1", Some(("A", "c")));
        put("T", "2", Some(("A", "a")));
        put("T", "3", Some(("B", "b")));
        put("T", "4", Some(("A", "b")));
        put("T", "5", None);
        put("Other", "6", Some(("A", "d")));
        let pks = |q: &IndexQuery| -> Vec<String> {
            t.query_index("T", q)
                .unwrap()
                .iter()
                .map(|i| i["pk"]["S"].as_str().unwrap().to_owned())
                .collect()
        };
        let all = IndexQuery::new("gpk", "A", "gsk");
        assert_eq!(pks(&all), ["2", "4", "1"]);
        let back = IndexQuery {
            forward: false,
            start_after: Some("c".into()),
            ..all.clone()
        };
        assert_eq!(pks(&back), ["4", "2"]);
        let page = IndexQuery {
            limit: Some(1),
            start_after: Some("a".into()),
            ..all.clone()
        };
        assert_eq!(pks(&page), ["4"]);
        assert_eq!(
            t.count_index("T", "gpk", "gsk").unwrap(),
            [("A".to_owned(), 3), ("B".to_owned(), 1)]
        );
        // Attribute names become part of the SQL, so only plain names are accepted.
        let bad = IndexQuery::new("gpk.S') --", "A", "gsk");
        assert!(matches!(
            t.query_index("T", &bad),
            Err(PortError::Invalid(_))
        ));
        assert!(matches!(
            t.ensure_index("g pk", "gsk"),
            Err(PortError::Invalid(_))
        ));
    }

    #[test]
    fn the_store_persists_in_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/upsell.db");
        TableStore::open(&path)
            .unwrap()
            .put("T", &key("P", "a"), &item("P", "a"))
            .unwrap();
        let again = TableStore::open(&path).unwrap();
        assert_eq!(
            again.get("T", &key("P", "a")).unwrap(),
            Some(item("P", "a"))
        );
    }
}
