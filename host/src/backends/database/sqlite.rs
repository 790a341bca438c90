//! The embedded database: one SQLite file per service in the state directory, through
//! sqlx's SQLite driver.
//!
//! Components send the same SQL to both backends, so this one makes SQLite answer the way
//! PostgreSQL does:
//! - `now()` exists (a function registered on every connection) and returns the fixed-width
//!   UTC text every timestamp is stored as, so timestamps compare and sort as text;
//! - timestamp parameters are rewritten into that form, and columns declared `TIMESTAMP` /
//!   `BOOLEAN` come back as the `timestamp` / `boolean` values PostgreSQL gives;
//! - a unique violation names the violated index (`CREATE UNIQUE INDEX users_username_key`),
//!   as PostgreSQL names the constraint, so components recognise it;
//! - transactions take the write lock when they begin (`BEGIN IMMEDIATE`), so two of them
//!   queue up instead of failing when both try to write.
//!
//! SQLite lets one writer in at a time, and its own queue (the busy handler) is no queue:
//! each waiter polls with growing sleeps, so under load one could wait through many others'
//! turns (seconds at the 99th percentile of `POST /orders`) and give up while the file sat
//! idle between a commit and the next poll. So writers (transactions, and statements outside
//! one that may write) take turns in the host first, first come first served, for at most the
//! acquire timeout; the busy handler only covers what else holds the lock (a rollback sqlx
//! finishes after a dropped transaction).
//!
//! Every connection carries the guard of [`super::sqlite_guard`]: no other file can be
//! attached or written, and a statement past the statement timeout is interrupted.

use super::{
    Database, DatabaseError, DatabaseSettings, MigrateDatabaseError, ReadRowsError, ResultLimits,
    Rows, Transaction, Value,
};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Column, Row, Sqlite, SqlitePool, TypeInfo, ValueRef};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a service's SQLite file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the embedded database {path}: {source}")]
pub struct SqliteSetupError {
    path: PathBuf,
    source: sqlx::Error,
}

#[derive(Clone)]
pub struct SqliteDatabase {
    pool: SqlitePool,
    /// Shared with the transactions, which name the file in errors too.
    path: Arc<Path>,
    limits: ResultLimits,
    statement_timeout: Duration,
    /// One permit: the turn to write (see the module's doc).
    writer: Arc<Semaphore>,
    acquire_timeout: Duration,
}

impl SqliteDatabase {
    /// Opens (creating it if missing) the database file at `path`.
    pub async fn open(
        path: &Path,
        settings: DatabaseSettings,
    ) -> Result<SqliteDatabase, SqliteSetupError> {
        let (max_connections, acquire_timeout) =
            (settings.max_connections, settings.acquire_timeout);
        let statement_timeout = settings.statement_timeout;
        let setup_error = |source| SqliteSetupError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| setup_error(error.into()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // Readers never wait for the writer; a committed transaction is on disk.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Writers take turns: a waiting one gives up after the acquire timeout, like a
            // PostgreSQL call that cannot get a connection.
            .busy_timeout(acquire_timeout.max(Duration::from_secs(1)));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(acquire_timeout)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    let mut handle = connection.lock_handle().await?;
                    let raw = handle.as_raw_handle().as_ptr();
                    register_now(raw)?;
                    // SAFETY: the handle is open and locked for us while `handle` lives.
                    unsafe { super::sqlite_guard::install(raw, statement_timeout) }
                })
            })
            .connect_with(options)
            .await
            .map_err(setup_error)?;
        Ok(SqliteDatabase {
            pool,
            path: Arc::from(path),
            limits: settings.limits,
            statement_timeout,
            writer: Arc::new(Semaphore::new(1)),
            acquire_timeout,
        })
    }

    /// The turn to write, in arrival order; `unavailable` after the acquire timeout, like a
    /// PostgreSQL call that gets no connection.
    async fn writer_turn(&self) -> Result<OwnedSemaphorePermit, DatabaseError> {
        let waited =
            tokio::time::timeout(self.acquire_timeout, self.writer.clone().acquire_owned());
        match waited.await {
            Ok(Ok(turn)) => Ok(turn),
            // The semaphore is never closed.
            Ok(Err(closed)) => Err(DatabaseError::Unavailable(closed.to_string())),
            Err(_) => Err(DatabaseError::Unavailable(format!(
                "no turn to write to {} within {:?} (database.acquire_timeout_seconds): \
                 other writers held it",
                self.path.display(),
                self.acquire_timeout
            ))),
        }
    }

    /// The turn to write if `sql`, run outside a transaction, may write.
    async fn turn_for(&self, sql: &str) -> Result<Option<OwnedSemaphorePermit>, DatabaseError> {
        if may_write(sql) {
            self.writer_turn().await.map(Some)
        } else {
            Ok(None)
        }
    }

    /// Maps sqlx's error onto [`DatabaseError`]; a unique violation is named after the
    /// violated unique index, which takes a look at the schema (on the error path only).
    async fn classify(&self, error: sqlx::Error) -> DatabaseError {
        let sqlx::Error::Database(db) = &error else {
            return match error {
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                    DatabaseError::Unavailable(error.to_string())
                }
                other => DatabaseError::QueryFailed(other.to_string()),
            };
        };
        let message = db.message().to_string();
        // "UNIQUE constraint failed: users.username" / "CHECK constraint failed: name".
        let subject = message
            .split_once("constraint failed: ")
            .map(|(_, subject)| subject.to_string())
            .unwrap_or_default();
        match db.code().as_deref() {
            // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY.
            Some("2067") | Some("1555") => {
                DatabaseError::UniqueViolation(self.unique_index_name(&subject).await)
            }
            Some("787") => DatabaseError::ForeignKeyViolation(subject),
            Some("275") => DatabaseError::CheckViolation(subject),
            Some("1299") => DatabaseError::CheckViolation(message),
            Some(super::sqlite_guard::INTERRUPTED) => DatabaseError::QueryFailed(format!(
                "the statement ran longer than {:?} (database.statement_timeout_ms)",
                self.statement_timeout
            )),
            // SQLITE_AUTH: the guard refused the statement.
            Some("23") => DatabaseError::QueryFailed(format!(
                "not allowed: {message} (a service may not attach, write or name other files)"
            )),
            // SQLITE_BUSY and SQLITE_LOCKED (and their extended codes): the writer did not
            // get its turn within the busy timeout.
            Some(code) if matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(5) | Ok(6)) => {
                DatabaseError::Unavailable(message)
            }
            _ => DatabaseError::QueryFailed(message),
        }
    }

    /// A result read row by row within the limits.
    async fn read(
        &self,
        rows: futures::stream::BoxStream<'_, Result<SqliteRow, sqlx::Error>>,
    ) -> Result<Rows, DatabaseError> {
        match super::read_rows(rows, self.limits, column_value).await {
            Ok(rows) => Ok(rows),
            Err(ReadRowsError::Sql(error)) => Err(self.classify(error).await),
            Err(ReadRowsError::Refused(error)) => Err(error),
        }
    }

    /// The unique index over exactly the columns of `subject` ("table.a, table.b"), or
    /// `<table>_pkey` for the primary key, as PostgreSQL would name them.
    async fn unique_index_name(&self, subject: &str) -> String {
        let mut table = String::new();
        let mut columns: Vec<String> = Vec::new();
        for qualified in subject.split(", ") {
            if let Some((t, column)) = qualified.split_once('.') {
                table = t.to_string();
                columns.push(column.to_string());
            }
        }
        columns.sort();
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT il.name, group_concat(ii.name, ',') FROM pragma_index_list($1) AS il \
             JOIN pragma_index_info(il.name) AS ii WHERE il.\"unique\" = 1 GROUP BY il.name",
        )
        .bind(&table)
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default();
        for (name, indexed) in indexes {
            let mut indexed: Vec<&str> = indexed.split(',').collect();
            indexed.sort_unstable();
            if indexed == columns && !name.starts_with("sqlite_autoindex_") {
                return name;
            }
        }
        match columns.as_slice() {
            [column] if column == "id" || column == "rowid" => format!("{table}_pkey"),
            _ => subject.to_string(),
        }
    }
}

/// Whether a statement run outside a transaction may write, by its first keyword: one that
/// starts with `SELECT`, `VALUES` or `EXPLAIN` reads; anything else (`WITH` too, which may
/// lead into a write) takes the turn to write.
fn may_write(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    loop {
        if let Some(comment) = rest.strip_prefix("--") {
            rest = comment.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(comment) = rest.strip_prefix("/*") {
            rest = comment.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
        rest = rest.trim_start();
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let keyword = &rest[..end];
    !["SELECT", "VALUES", "EXPLAIN"]
        .iter()
        .any(|read| keyword.eq_ignore_ascii_case(read))
}

/// The one text form of a timestamp in the embedded database: UTC, microseconds, fixed
/// width, so that text order is time order.
fn stored_timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Reads a stored timestamp: the platform's own form, or SQLite's `datetime()` form
/// (`YYYY-MM-DD HH:MM:SS[.fff]`, UTC), which a `CURRENT_TIMESTAMP` default writes.
fn parse_stored_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|naive| naive.and_utc())
        })
}

/// Registers `now()` on a fresh connection.
fn register_now(connection: *mut libsqlite3_sys::sqlite3) -> Result<(), sqlx::Error> {
    use libsqlite3_sys as ffi;
    unsafe extern "C" fn now(
        context: *mut ffi::sqlite3_context,
        _arguments: std::os::raw::c_int,
        _values: *mut *mut ffi::sqlite3_value,
    ) {
        let text = stored_timestamp(Utc::now());
        // SAFETY: `context` is the live context SQLite passed in; SQLITE_TRANSIENT makes
        // SQLite copy the text before `text` is dropped.
        unsafe {
            ffi::sqlite3_result_text(
                context,
                text.as_ptr().cast(),
                text.len() as std::os::raw::c_int,
                ffi::SQLITE_TRANSIENT(),
            )
        }
    }
    // SAFETY: `connection` is the open handle sqlx lent us while its lock is held; the
    // name is NUL-terminated and `now` matches SQLite's scalar-function signature.
    let code = unsafe {
        ffi::sqlite3_create_function_v2(
            connection,
            c"now".as_ptr(),
            0,
            // Not deterministic (it reads the clock); innocuous, so a schema may use it
            // in a DEFAULT.
            ffi::SQLITE_UTF8 | ffi::SQLITE_INNOCUOUS,
            std::ptr::null_mut(),
            Some(now),
            None,
            None,
            None,
        )
    };
    if code == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(sqlx::Error::Protocol(format!(
            "registering now() failed with SQLite code {code}"
        )))
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

fn bind(sql: &str, params: Vec<Value>) -> Result<SqliteQuery<'_>, DatabaseError> {
    let mut query = sqlx::query(sql);
    for param in params {
        query = match param {
            Value::Null => query.bind(None::<String>),
            Value::Boolean(value) => query.bind(value),
            Value::Int(value) => query.bind(value),
            Value::Float(value) => query.bind(value),
            Value::Text(value) => query.bind(value),
            Value::Bytes(value) => query.bind(value),
            Value::Timestamp(text) => query.bind(stored_timestamp(super::timestamp_param(&text)?)),
            Value::Numeric(text) => query.bind(super::numeric_param(&text)?.to_string()),
            Value::Uuid(text) => query.bind(super::uuid_param(&text)?.hyphenated().to_string()),
        };
    }
    Ok(query)
}

/// A value by its column's declared type where that carries more than SQLite's storage
/// class (booleans, timestamps), otherwise by the storage class.
fn column_value(row: &SqliteRow, index: usize) -> Result<Value, DatabaseError> {
    let failed = |error: sqlx::Error| DatabaseError::QueryFailed(error.to_string());
    let raw = row.try_get_raw(index).map_err(failed)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let storage = raw.type_info();
    // sqlx names a declared `TIMESTAMP` (or `DATETIME`) column `DATETIME`.
    let declared = row.columns()[index].type_info().name();
    Ok(match (declared, storage.name()) {
        ("BOOLEAN", "INTEGER") => {
            Value::Boolean(row.try_get_unchecked::<i64, _>(index).map_err(failed)? != 0)
        }
        ("DATETIME", "TEXT") => {
            let text: String = row.try_get_unchecked(index).map_err(failed)?;
            let time = parse_stored_timestamp(&text).ok_or_else(|| {
                DatabaseError::QueryFailed(format!(
                    "column `{}` holds `{text}`, which is not a timestamp",
                    row.columns()[index].name()
                ))
            })?;
            super::timestamp_value(time)
        }
        (_, "INTEGER") => Value::Int(row.try_get_unchecked(index).map_err(failed)?),
        (_, "REAL") => Value::Float(row.try_get_unchecked(index).map_err(failed)?),
        (_, "BLOB") => Value::Bytes(row.try_get_unchecked(index).map_err(failed)?),
        _ => Value::Text(row.try_get_unchecked(index).map_err(failed)?),
    })
}

#[async_trait]
impl Database for SqliteDatabase {
    async fn migrate(&self, migrations: &Path) -> Result<(), MigrateDatabaseError> {
        let Some(migrator) = super::migrate::migrator(migrations, "sqlite").await? else {
            return Ok(());
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|cause| MigrateDatabaseError::Apply {
                database: self.path.display().to_string(),
                cause: cause.to_string(),
            })
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Rows, DatabaseError> {
        let query = bind(sql, params)?;
        let _turn = self.turn_for(sql).await?;
        self.read(query.fetch(&self.pool)).await
    }

    async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, DatabaseError> {
        let query = bind(sql, params)?;
        let _turn = self.turn_for(sql).await?;
        match query.execute(&self.pool).await {
            Ok(done) => Ok(done.rows_affected()),
            Err(error) => Err(self.classify(error).await),
        }
    }

    fn system(&self) -> &'static str {
        "sqlite"
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>, DatabaseError> {
        let turn = self.writer_turn().await?;
        // sqlx-sqlite 0.8 leaves a pooled connection inside its transaction, holding the
        // write lock for good, when `begin_with` is dropped between SQLite's BEGIN and its own
        // check of it. A call can end at any await (its deadline, a client that went away),
        // so the begin runs to its end in a task of its own. A transaction nobody waits for
        // any more is rolled back there, the turn held until it is; one whose caller went
        // after it arrived is dropped with its turn, and sqlx rolls it back as any other.
        let (answer, waiting) = tokio::sync::oneshot::channel();
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let begun = pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map(|transaction| (transaction, turn));
            if let Err(Ok((abandoned, _turn))) = answer.send(begun) {
                if let Err(error) = abandoned.rollback().await {
                    tracing::warn!(%error, "rolling back an abandoned BEGIN failed");
                }
            }
        });
        let begun = waiting.await.map_err(|_| {
            DatabaseError::Unavailable("the task beginning the transaction ended".into())
        })?;
        match begun {
            Ok((transaction, turn)) => Ok(Box::new(SqliteTransaction {
                transaction,
                backend: self.clone(),
                _turn: turn,
            })),
            Err(error) => Err(self.classify(error).await),
        }
    }
}

struct SqliteTransaction {
    transaction: sqlx::Transaction<'static, Sqlite>,
    /// For naming violated constraints.
    backend: SqliteDatabase,
    /// Held until the transaction ends (dropped with it, however it ends).
    _turn: OwnedSemaphorePermit,
}

#[async_trait]
impl Transaction for SqliteTransaction {
    async fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Rows, DatabaseError> {
        let rows = bind(sql, params)?.fetch(&mut *self.transaction);
        self.backend.read(rows).await
    }

    async fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, DatabaseError> {
        match bind(sql, params)?.execute(&mut *self.transaction).await {
            Ok(done) => Ok(done.rows_affected()),
            Err(error) => Err(self.backend.classify(error).await),
        }
    }

    async fn commit(self: Box<Self>) -> Result<(), DatabaseError> {
        let backend = self.backend;
        match self.transaction.commit().await {
            Ok(()) => Ok(()),
            Err(error) => Err(backend.classify(error).await),
        }
    }

    async fn rollback(self: Box<Self>) -> Result<(), DatabaseError> {
        let backend = self.backend;
        match self.transaction.rollback().await {
            Ok(()) => Ok(()),
            Err(error) => Err(backend.classify(error).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DatabaseSettings {
        DatabaseSettings {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_millis(300),
            limits: ResultLimits {
                rows: 100,
                bytes: 64 * 1024,
            },
        }
    }

    async fn open(dir: &tempfile::TempDir) -> SqliteDatabase {
        let backend = SqliteDatabase::open(&dir.path().join("t.sqlite"), settings())
            .await
            .unwrap();
        backend
            .execute(
                "CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, \
                 active BOOLEAN NOT NULL DEFAULT TRUE, price_cents INTEGER NOT NULL CONSTRAINT items_price_check CHECK (price_cents > 0), \
                 created_at TIMESTAMP NOT NULL DEFAULT (now()))",
                Vec::new(),
            )
            .await
            .unwrap();
        backend
            .execute(
                "CREATE UNIQUE INDEX items_name_key ON items (name)",
                Vec::new(),
            )
            .await
            .unwrap();
        backend
    }

    #[tokio::test]
    async fn answers_in_the_types_postgres_gives() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir).await;
        let inserted = db
            .query(
                "INSERT INTO items (name, price_cents) VALUES ($1, $2) RETURNING id, name, active, price_cents, created_at",
                vec![Value::Text("a".into()), Value::Int(250)],
            )
            .await
            .unwrap();
        assert_eq!(
            inserted.columns,
            ["id", "name", "active", "price_cents", "created_at"]
        );
        let row = &inserted.values[0];
        assert!(matches!(row[0], Value::Int(1)));
        assert!(matches!(&row[1], Value::Text(name) if name == "a"));
        assert!(matches!(row[2], Value::Boolean(true)));
        assert!(matches!(row[3], Value::Int(250)));
        let Value::Timestamp(created) = &row[4] else {
            panic!("created_at came back as {:?}", row[4]);
        };
        let created = DateTime::parse_from_rfc3339(created).unwrap();
        assert!(
            (Utc::now() - created.with_timezone(&Utc))
                .num_seconds()
                .abs()
                < 5
        );

        // A timestamp parameter compares as time, whatever offset it was written with.
        let later = "2999-01-01T01:00:00+01:00".to_string();
        let older = db
            .query(
                "SELECT id FROM items WHERE created_at < $1 AND active = $2",
                vec![Value::Timestamp(later), Value::Boolean(true)],
            )
            .await
            .unwrap();
        assert_eq!(older.values.len(), 1);
        let updated = db
            .query(
                "UPDATE items SET created_at = $1 WHERE id = $2 RETURNING created_at",
                vec![
                    Value::Timestamp("2026-11-25T11:00:00.5+01:00".into()),
                    Value::Int(1),
                ],
            )
            .await
            .unwrap();
        assert!(
            matches!(&updated.values[0][0], Value::Timestamp(t) if t == "2026-11-25T10:00:00.500Z")
        );
    }

    #[tokio::test]
    async fn violations_are_named_like_postgres_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir).await;
        let insert = "INSERT INTO items (name, price_cents) VALUES ($1, $2)";
        db.execute(insert, vec![Value::Text("a".into()), Value::Int(1)])
            .await
            .unwrap();
        let duplicate = db
            .execute(insert, vec![Value::Text("a".into()), Value::Int(1)])
            .await;
        assert!(
            matches!(&duplicate, Err(DatabaseError::UniqueViolation(name)) if name == "items_name_key"),
            "{duplicate:?}"
        );
        let negative = db
            .execute(insert, vec![Value::Text("b".into()), Value::Int(-1)])
            .await;
        assert!(
            matches!(&negative, Err(DatabaseError::CheckViolation(name)) if name == "items_price_check"),
            "{negative:?}"
        );
        let same_id = db
            .execute(
                "INSERT INTO items (id, name, price_cents) VALUES (1, 'c', 1)",
                Vec::new(),
            )
            .await;
        assert!(
            matches!(&same_id, Err(DatabaseError::UniqueViolation(name)) if name == "items_pkey"),
            "{same_id:?}"
        );
        // ON CONFLICT ... DO NOTHING is portable and reports 0 rows.
        let ignored = db
            .execute(
                "INSERT INTO items (name, price_cents) VALUES ($1, 1) ON CONFLICT (name) DO NOTHING",
                vec![Value::Text("a".into())],
            )
            .await;
        assert!(matches!(ignored, Ok(0)), "{ignored:?}");
    }

    #[tokio::test]
    async fn migrations_come_from_the_sqlite_folder_or_the_portable_one() {
        let dir = tempfile::tempdir().unwrap();
        let portable = dir.path().join("portable");
        std::fs::create_dir_all(&portable).unwrap();
        std::fs::write(
            portable.join("0001_init.sql"),
            "CREATE TABLE shared (id INTEGER);",
        )
        .unwrap();
        let split = dir.path().join("split");
        for (dialect, table) in [("postgres", "pg_only"), ("sqlite", "lite_only")] {
            std::fs::create_dir_all(split.join(dialect)).unwrap();
            std::fs::write(
                split.join(dialect).join("0001_init.sql"),
                format!("CREATE TABLE {table} (id INTEGER);"),
            )
            .unwrap();
        }
        let tables = |db: SqliteDatabase| async move {
            let rows = db
                .query(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT IN ('_sqlx_migrations', 'sqlite_sequence') ORDER BY name",
                    Vec::new(),
                )
                .await
                .unwrap();
            rows.values
                .into_iter()
                .map(|row| match &row[0] {
                    Value::Text(name) => name.clone(),
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        let one = SqliteDatabase::open(&dir.path().join("a.sqlite"), settings())
            .await
            .unwrap();
        one.migrate(&portable).await.unwrap();
        // Applied once: a second start finds nothing new.
        one.migrate(&portable).await.unwrap();
        assert_eq!(tables(one).await, ["shared"]);
        let other = SqliteDatabase::open(&dir.path().join("b.sqlite"), settings())
            .await
            .unwrap();
        other.migrate(&split).await.unwrap();
        assert_eq!(tables(other).await, ["lite_only"]);
    }

    #[tokio::test]
    async fn transactions_commit_roll_back_and_queue_up() {
        let dir = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(open(&dir).await);
        let mut rolled_back = db.begin().await.unwrap();
        rolled_back
            .execute(
                "INSERT INTO items (name, price_cents) VALUES ('gone', 1)",
                Vec::new(),
            )
            .await
            .unwrap();
        rolled_back.rollback().await.unwrap();
        // Twenty read-then-write transactions at once: each waits for the write lock
        // instead of failing, and no increment is lost.
        db.execute(
            "INSERT INTO items (name, price_cents) VALUES ('counter', 1)",
            Vec::new(),
        )
        .await
        .unwrap();
        let increments = (0..20).map(|_| {
            let db = db.clone();
            async move {
                let mut tx = db.begin().await?;
                let rows = tx
                    .query(
                        "SELECT price_cents FROM items WHERE name = 'counter'",
                        Vec::new(),
                    )
                    .await?;
                let Value::Int(current) = rows.values[0][0] else {
                    panic!("not an int")
                };
                tx.execute(
                    "UPDATE items SET price_cents = $1 WHERE name = 'counter'",
                    vec![Value::Int(current + 1)],
                )
                .await?;
                tx.commit().await
            }
        });
        for result in futures::future::join_all(increments).await {
            result.unwrap();
        }
        let rows = db
            .query(
                "SELECT name, price_cents FROM items ORDER BY id",
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(rows.values.len(), 1, "the rolled-back row is not there");
        assert!(matches!(rows.values[0][1], Value::Int(21)));
    }

    /// A database with the table `t (n)`, whose writers wait at most `acquire_timeout`.
    async fn open_table_t(dir: &tempfile::TempDir, acquire_timeout: Duration) -> SqliteDatabase {
        let db = SqliteDatabase::open(
            &dir.path().join("t.sqlite"),
            DatabaseSettings {
                acquire_timeout,
                ..settings()
            },
        )
        .await
        .unwrap();
        db.execute("CREATE TABLE t (n INTEGER NOT NULL)", Vec::new())
            .await
            .unwrap();
        db
    }

    #[tokio::test]
    async fn writers_wait_their_turn_readers_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_table_t(&dir, Duration::from_millis(300)).await;
        let mut open = db.begin().await.unwrap();
        open.execute("INSERT INTO t (n) VALUES (1)", Vec::new())
            .await
            .unwrap();
        // While a transaction holds the turn: reads answer, writes and other transactions
        // give up after the acquire timeout, naming it.
        let read = db
            .query(" -- a comment first\n select count(*) from t", Vec::new())
            .await
            .unwrap();
        assert!(matches!(read.values[0][0], Value::Int(0)));
        for refused in [
            db.execute("INSERT INTO t (n) VALUES (2)", Vec::new()).await,
            db.query(
                "/* c */ WITH x AS (SELECT 3) INSERT INTO t SELECT * FROM x RETURNING n",
                Vec::new(),
            )
            .await
            .map(|_| 0),
            db.begin().await.map(|_| 0),
        ] {
            let Err(DatabaseError::Unavailable(message)) = refused else {
                panic!("expected unavailable, got {refused:?}");
            };
            assert!(message.contains("acquire_timeout_seconds"), "{message}");
        }
        // Once it commits, the next writer gets its turn.
        open.commit().await.unwrap();
        db.execute("INSERT INTO t (n) VALUES (2)", Vec::new())
            .await
            .unwrap();
        let rows = db
            .query("SELECT n FROM t ORDER BY n", Vec::new())
            .await
            .unwrap();
        assert_eq!(rows.values.len(), 2);
    }

    /// A call can end at any await (its deadline, a client that went away): a `begin` dropped
    /// part-way must leave no transaction open on a pooled connection, which would hold
    /// SQLite's write lock for good and turn every later write into "database is locked".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_begin_dropped_part_way_leaves_no_transaction_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_table_t(&dir, Duration::from_millis(500)).await;
        // Dropped after one to eight polls, at gaps from 0 to 150 µs, so that some drops
        // land between SQLite's BEGIN and the moment a transaction exists to roll it back.
        let waker = futures::task::noop_waker();
        let mut context = std::task::Context::from_waker(&waker);
        let mut began = 0;
        for gap in 0..150 {
            for polls in 1..=8 {
                let mut begin = db.begin();
                for _ in 0..polls {
                    if let std::task::Poll::Ready(begun) = begin.as_mut().poll(&mut context) {
                        begun.unwrap_or_else(|error| panic!("a begin after dropped ones: {error}"));
                        began += 1;
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(gap));
                }
                drop(begin);
                // Lets the pool take back the connection the drop returned.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        assert!(began > 0, "no begin got through: the drops proved nothing");
        for n in 0..4 {
            db.execute("INSERT INTO t (n) VALUES ($1)", vec![Value::Int(n)])
                .await
                .unwrap_or_else(|error| panic!("write {n} after the dropped begins: {error}"));
        }
        // Committed, not written into a transaction left open on some pooled connection.
        let elsewhere = SqliteDatabase::open(&dir.path().join("t.sqlite"), settings())
            .await
            .unwrap();
        let rows = elsewhere
            .query("SELECT count(*) FROM t", Vec::new())
            .await
            .unwrap();
        assert!(
            matches!(rows.values[0][0], Value::Int(4)),
            "{:?}",
            rows.values
        );
    }

    #[test]
    fn statements_that_may_write_are_told_by_their_first_keyword() {
        for read in [
            "SELECT 1",
            "  select 1",
            "-- x\nSELECT 1",
            "/* x */ VALUES (1)",
            "EXPLAIN SELECT 1",
        ] {
            assert!(!may_write(read), "{read}");
        }
        for write in [
            "INSERT INTO t VALUES (1)",
            "update t set n = 1",
            "WITH x AS (SELECT 1) DELETE FROM t",
            "PRAGMA user_version = 3",
            "SELECTED",
            "/* unterminated",
            "",
        ] {
            assert!(may_write(write), "{write}");
        }
    }

    #[tokio::test]
    async fn other_files_cannot_be_attached_written_or_named() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir).await;
        let other = dir.path().join("other.sqlite");
        std::fs::write(&other, b"").unwrap();
        let copy = dir.path().join("copy.sqlite");
        for sql in [
            format!("ATTACH '{}' AS other", other.display()),
            format!("VACUUM INTO '{}'", copy.display()),
            "PRAGMA journal_mode = DELETE".to_string(),
            "PRAGMA writable_schema = ON".to_string(),
            format!("PRAGMA temp_store_directory = '{}'", dir.path().display()),
            "SELECT load_extension('/tmp/evil')".to_string(),
        ] {
            let refused = db.execute(&sql, Vec::new()).await;
            assert!(
                matches!(refused, Err(DatabaseError::QueryFailed(_))),
                "{sql}: {refused:?}"
            );
        }
        assert!(!copy.exists(), "VACUUM INTO wrote a file");
        // The schema's own introspection still works (the host names violations with it).
        let columns = db
            .query("SELECT name FROM pragma_table_info('items')", Vec::new())
            .await
            .unwrap();
        assert_eq!(columns.values.len(), 5);
        db.query("PRAGMA index_list('items')", Vec::new())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn long_statements_and_large_results_are_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir).await;
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                       SELECT count(*) FROM n";
        let started = std::time::Instant::now();
        let cut = db.query(endless, Vec::new()).await;
        assert!(
            matches!(&cut, Err(DatabaseError::QueryFailed(message)) if message.contains("longer than")),
            "{cut:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let many = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 101) \
                    SELECT i FROM n";
        assert!(matches!(
            db.query(many, Vec::new()).await,
            Err(DatabaseError::QueryFailed(message)) if message.contains("more than 100 rows")
        ));
        let large = "SELECT zeroblob(70000)";
        assert!(matches!(
            db.query(large, Vec::new()).await,
            Err(DatabaseError::QueryFailed(message)) if message.contains("larger than")
        ));
        // The connection is fine afterwards.
        let exactly = many.replace("LIMIT 101", "LIMIT 100");
        assert_eq!(
            db.query(&exactly, Vec::new()).await.unwrap().values.len(),
            100
        );
    }
}
