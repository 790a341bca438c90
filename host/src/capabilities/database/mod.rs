//! The `database` interface: parameterised SQL, query / execute and transactions over a
//! [`DatabaseBackend`]: PostgreSQL, or an embedded SQLite file per service.

mod postgres;
mod sqlite;

pub use postgres::{PostgresBackend, PostgresSetupError};
pub use sqlite::{SqliteBackend, SqliteSetupError};

use super::CallState;
use crate::bindings::database::{DatabaseError, Host, HostTransaction, Rows, Value};
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use wasmtime::component::Resource;

/// Why a service's migrations could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrateDatabaseError {
    #[error("cannot read the migrations in {path}: {cause}")]
    Read { path: PathBuf, cause: String },
    #[error("migrating database `{database}` failed: {cause}")]
    Apply { database: String, cause: String },
}

/// The migrations a backend of `dialect` applies: `<migrations>/<dialect>/` where a service
/// keeps one set per backend (their SQL differs), otherwise `<migrations>/` itself; `None`
/// if the service has no migrations.
async fn migrator(
    migrations: &Path,
    dialect: &str,
) -> Result<Option<sqlx::migrate::Migrator>, MigrateDatabaseError> {
    let own = migrations.join(dialect);
    let folder = if own.is_dir() {
        own
    } else {
        migrations.to_path_buf()
    };
    if !folder.is_dir() {
        return Ok(None);
    }
    sqlx::migrate::Migrator::new(folder.as_path())
        .await
        .map(Some)
        .map_err(|cause| MigrateDatabaseError::Read {
            path: folder,
            cause: cause.to_string(),
        })
}

/// A `timestamp` parameter (RFC 3339 text in the WIT), checked before any backend binds it.
fn timestamp_param(text: &str) -> Result<chrono::DateTime<chrono::Utc>, DatabaseError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&chrono::Utc))
        .map_err(|_| {
            DatabaseError::QueryFailed(format!("timestamp parameter `{text}` is not RFC 3339"))
        })
}

/// A `numeric` parameter (decimal text in the WIT).
fn numeric_param(text: &str) -> Result<rust_decimal::Decimal, DatabaseError> {
    text.parse().map_err(|_| {
        DatabaseError::QueryFailed(format!("numeric parameter `{text}` is not a decimal"))
    })
}

/// A `uuid` parameter.
fn uuid_param(text: &str) -> Result<uuid::Uuid, DatabaseError> {
    uuid::Uuid::parse_str(text)
        .map_err(|_| DatabaseError::QueryFailed(format!("uuid parameter `{text}` is not a UUID")))
}

/// A timestamp as it leaves either backend: UTC RFC 3339 with as many fraction digits as
/// it has (PostgreSQL keeps microseconds), so both give components the same text.
fn timestamp_value(time: chrono::DateTime<chrono::Utc>) -> Value {
    Value::Timestamp(time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// The WIT `rows` of a result: column names from the first row, values by `value`.
fn to_rows<R: sqlx::Row>(
    rows: &[R],
    value: impl Fn(&R, usize) -> Result<Value, DatabaseError>,
) -> Result<Rows, DatabaseError> {
    use sqlx::Column;
    let columns = rows
        .first()
        .map(|row| row.columns().iter().map(|c| c.name().to_string()).collect())
        .unwrap_or_default();
    let values = rows
        .iter()
        .map(|row| {
            (0..row.columns().len())
                .map(|index| value(row, index))
                .collect()
        })
        .collect::<Result<_, _>>()?;
    Ok(Rows { columns, values })
}

/// A service's own database.
#[async_trait]
pub trait DatabaseBackend: Send + Sync {
    /// Applies the migrations in `migrations` that the database has not seen yet (at start
    /// and before a new version takes traffic). A missing folder means none.
    async fn migrate(&self, migrations: &Path) -> Result<(), MigrateDatabaseError>;
    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Rows, DatabaseError>;
    async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, DatabaseError>;
    async fn begin(&self) -> Result<Box<dyn DatabaseTransaction>, DatabaseError>;
}

/// An open transaction; dropping it without `commit` rolls it back.
#[async_trait]
pub trait DatabaseTransaction: Send {
    async fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Rows, DatabaseError>;
    async fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, DatabaseError>;
    async fn commit(self: Box<Self>) -> Result<(), DatabaseError>;
    async fn rollback(self: Box<Self>) -> Result<(), DatabaseError>;
}

/// The `transaction` resource in a call's table: empty once committed or rolled back.
pub struct TransactionHandle(Option<Box<dyn DatabaseTransaction>>);

fn finished() -> DatabaseError {
    DatabaseError::InvalidState("the transaction was already committed or rolled back".into())
}

impl CallState {
    fn database(&self) -> Result<&dyn DatabaseBackend, DatabaseError> {
        self.capabilities.database.as_deref().ok_or_else(|| {
            DatabaseError::InvalidState("no database is configured for this service".into())
        })
    }
}

impl Host for CallState {
    async fn query(
        &mut self,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, DatabaseError>> {
        Ok(match self.database() {
            Ok(database) => database.query(&sql, params).await,
            Err(error) => Err(error),
        })
    }

    async fn execute(
        &mut self,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<u64, DatabaseError>> {
        Ok(match self.database() {
            Ok(database) => database.execute(&sql, params).await,
            Err(error) => Err(error),
        })
    }

    async fn begin(
        &mut self,
    ) -> wasmtime::Result<Result<Resource<TransactionHandle>, DatabaseError>> {
        let transaction = match self.database() {
            Ok(database) => database.begin().await,
            Err(error) => Err(error),
        };
        Ok(match transaction {
            Ok(transaction) => Ok(self.table.push(TransactionHandle(Some(transaction)))?),
            Err(error) => Err(error),
        })
    }
}

impl HostTransaction for CallState {
    async fn query(
        &mut self,
        transaction: Resource<TransactionHandle>,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, DatabaseError>> {
        Ok(match self.table.get_mut(&transaction)?.0.as_mut() {
            Some(open) => open.query(&sql, params).await,
            None => Err(finished()),
        })
    }

    async fn execute(
        &mut self,
        transaction: Resource<TransactionHandle>,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<u64, DatabaseError>> {
        Ok(match self.table.get_mut(&transaction)?.0.as_mut() {
            Some(open) => open.execute(&sql, params).await,
            None => Err(finished()),
        })
    }

    async fn commit(
        &mut self,
        transaction: Resource<TransactionHandle>,
    ) -> wasmtime::Result<Result<(), DatabaseError>> {
        Ok(match self.table.get_mut(&transaction)?.0.take() {
            Some(open) => open.commit().await,
            None => Err(finished()),
        })
    }

    async fn rollback(
        &mut self,
        transaction: Resource<TransactionHandle>,
    ) -> wasmtime::Result<Result<(), DatabaseError>> {
        Ok(match self.table.get_mut(&transaction)?.0.take() {
            Some(open) => open.rollback().await,
            None => Err(finished()),
        })
    }

    async fn drop(&mut self, transaction: Resource<TransactionHandle>) -> wasmtime::Result<()> {
        // An open transaction is rolled back when its connection goes back to the pool.
        self.table.delete(transaction)?;
        Ok(())
    }
}
