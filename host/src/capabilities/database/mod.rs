//! The `database` interface: parameterised SQL, query / execute and transactions over a
//! [`DatabaseBackend`]: PostgreSQL, or an embedded SQLite file per service.

mod postgres;
mod sqlite;

pub use postgres::{redact, PostgresBackend, PostgresSetupError};
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

/// The migrations a backend applies: `<migrations>/<dialect>/` where a service keeps one
/// set per backend (their SQL differs), otherwise `<migrations>/` itself.
pub fn dialect_folder(migrations: &Path, dialect: &str) -> PathBuf {
    let own = migrations.join(dialect);
    if own.is_dir() {
        own
    } else {
        migrations.to_path_buf()
    }
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
