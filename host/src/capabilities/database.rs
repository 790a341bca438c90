//! The `database` interface: parameterised SQL, query / execute and transactions on the
//! service's own database (PostgreSQL or SQLite, see `backends::database`).

use super::{
    ended, granted, CallState, Failure, Grant, GrantError, ServiceCapabilities,
    OPEN_TRANSACTIONS_PER_CALL,
};
use crate::backends::database::{self as backend, Transaction};
use crate::bindings::database::{DatabaseError, Host, HostTransaction, Rows, Value};
use crate::telemetry::{statement_summary, Attribute, Kind, Trace};
use wasmtime::component::Resource;

const INTERFACE: &str = "database";

pub(super) fn grant(grant: &Grant<'_>, into: &mut ServiceCapabilities) -> Result<(), GrantError> {
    into.database = Some(grant.backend(&grant.backends.database, INTERFACE)?);
    Ok(())
}

/// A database call's failure: a `database-error` for the guest, or a trap.
pub type DatabaseFailure = Failure<DatabaseError>;

/// The `transaction` resource in a call's table: empty once committed or rolled back.
pub struct TransactionHandle(Option<Box<dyn Transaction>>);

/// A transaction still open when its handle goes (the guest dropped it, or the call ended
/// mid-way: a trap, its deadline, a client that went away) is rolled back at once. Left to
/// the pool, it would keep its locks (SQLite's write lock, PostgreSQL's row locks) until its
/// connection happened to be used again.
impl Drop for TransactionHandle {
    fn drop(&mut self) {
        let Some(open) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = open.rollback().await {
                        tracing::warn!(%error, "rolling back an abandoned transaction failed");
                    }
                });
            }
            Err(_) => tracing::warn!("an abandoned transaction is rolled back by its pool"),
        }
    }
}

fn finished() -> DatabaseFailure {
    Failure::Error(DatabaseError::InvalidState(
        "the transaction was already committed or rolled back".into(),
    ))
}

impl From<backend::DatabaseError> for DatabaseFailure {
    fn from(error: backend::DatabaseError) -> Self {
        use backend::DatabaseError as E;
        Failure::Error(match error {
            E::UniqueViolation(name) => DatabaseError::UniqueViolation(name),
            E::ForeignKeyViolation(name) => DatabaseError::ForeignKeyViolation(name),
            E::CheckViolation(name) => DatabaseError::CheckViolation(name),
            E::Unavailable(cause) => DatabaseError::Unavailable(cause),
            E::QueryFailed(cause) => DatabaseError::QueryFailed(cause),
        })
    }
}

fn params(values: Vec<Value>) -> Vec<backend::Value> {
    values
        .into_iter()
        .map(|value| match value {
            Value::Null => backend::Value::Null,
            Value::Boolean(v) => backend::Value::Boolean(v),
            Value::Int(v) => backend::Value::Int(v),
            Value::Float(v) => backend::Value::Float(v),
            Value::Text(v) => backend::Value::Text(v),
            Value::Bytes(v) => backend::Value::Bytes(v),
            Value::Timestamp(v) => backend::Value::Timestamp(v),
            Value::Numeric(v) => backend::Value::Numeric(v),
            Value::Uuid(v) => backend::Value::Uuid(v),
        })
        .collect()
}

fn rows(rows: backend::Rows) -> Rows {
    let value = |value| match value {
        backend::Value::Null => Value::Null,
        backend::Value::Boolean(v) => Value::Boolean(v),
        backend::Value::Int(v) => Value::Int(v),
        backend::Value::Float(v) => Value::Float(v),
        backend::Value::Text(v) => Value::Text(v),
        backend::Value::Bytes(v) => Value::Bytes(v),
        backend::Value::Timestamp(v) => Value::Timestamp(v),
        backend::Value::Numeric(v) => Value::Numeric(v),
        backend::Value::Uuid(v) => Value::Uuid(v),
    };
    Rows {
        columns: rows.columns,
        values: rows
            .values
            .into_iter()
            .map(|row| row.into_iter().map(value).collect())
            .collect(),
    }
}

impl Host for CallState {
    async fn query(&mut self, sql: String, values: Vec<Value>) -> Result<Rows, DatabaseFailure> {
        let database = granted(&self.capabilities.database, INTERFACE, self)?;
        let span = self.database_span(Some(&sql));
        let result = database.query(&sql, params(values)).await;
        Ok(rows(ended(span, result)?))
    }

    async fn execute(&mut self, sql: String, values: Vec<Value>) -> Result<u64, DatabaseFailure> {
        let database = granted(&self.capabilities.database, INTERFACE, self)?;
        let span = self.database_span(Some(&sql));
        let result = database.execute(&sql, params(values)).await;
        Ok(ended(span, result)?)
    }

    async fn begin(&mut self) -> Result<Resource<TransactionHandle>, DatabaseFailure> {
        let database = granted(&self.capabilities.database, INTERFACE, self)?;
        if self.open_transactions >= OPEN_TRANSACTIONS_PER_CALL {
            return Err(Failure::Error(DatabaseError::InvalidState(format!(
                "a call may hold at most {OPEN_TRANSACTIONS_PER_CALL} transactions open"
            ))));
        }
        let span = self.database_span(None);
        let transaction = ended(span, database.begin().await)?;
        let handle = self.table.push(TransactionHandle(Some(transaction)))?;
        self.open_transactions += 1;
        Ok(handle)
    }

    fn convert_database_error(
        &mut self,
        failure: DatabaseFailure,
    ) -> wasmtime::Result<DatabaseError> {
        failure.lower()
    }
}

impl CallState {
    /// The span of one statement (`None`: a `BEGIN`): its summary, never its values.
    fn database_span(&self, sql: Option<&str>) -> Option<Trace> {
        let trace = self.trace.as_ref()?;
        if !trace.is_recording() {
            return Some(trace.clone());
        }
        let summary = sql.map_or_else(|| "BEGIN".to_string(), statement_summary);
        let system = self
            .capabilities
            .database
            .as_ref()
            .map_or("unknown", |database| database.system());
        let attributes = vec![
            Attribute::new("db.system.name", system),
            Attribute::new("db.query.summary", summary.clone()),
            Attribute::new("db.namespace", self.capabilities.service.clone()),
        ];
        Some(trace.child(summary, Kind::Client, attributes))
    }

    /// Takes the open transaction out of its handle to commit or roll it back: from now on
    /// it no longer counts against the call's open transactions.
    fn finish(
        &mut self,
        transaction: &Resource<TransactionHandle>,
    ) -> Result<Box<dyn Transaction>, DatabaseFailure> {
        let open = self
            .table
            .get_mut(transaction)?
            .0
            .take()
            .ok_or_else(finished)?;
        self.open_transactions -= 1;
        Ok(open)
    }
}

impl HostTransaction for CallState {
    async fn query(
        &mut self,
        transaction: Resource<TransactionHandle>,
        sql: String,
        values: Vec<Value>,
    ) -> Result<Rows, DatabaseFailure> {
        let span = self.database_span(Some(&sql));
        let open = self.table.get_mut(&transaction)?.0.as_mut();
        let open = open.ok_or_else(finished)?;
        let result = open.query(&sql, params(values)).await;
        Ok(rows(ended(span, result)?))
    }

    async fn execute(
        &mut self,
        transaction: Resource<TransactionHandle>,
        sql: String,
        values: Vec<Value>,
    ) -> Result<u64, DatabaseFailure> {
        let span = self.database_span(Some(&sql));
        let open = self.table.get_mut(&transaction)?.0.as_mut();
        let open = open.ok_or_else(finished)?;
        let result = open.execute(&sql, params(values)).await;
        Ok(ended(span, result)?)
    }

    async fn commit(
        &mut self,
        transaction: Resource<TransactionHandle>,
    ) -> Result<(), DatabaseFailure> {
        let span = self.database_span(Some("COMMIT"));
        let open = self.finish(&transaction)?;
        Ok(ended(span, open.commit().await)?)
    }

    async fn rollback(
        &mut self,
        transaction: Resource<TransactionHandle>,
    ) -> Result<(), DatabaseFailure> {
        let span = self.database_span(Some("ROLLBACK"));
        let open = self.finish(&transaction)?;
        Ok(ended(span, open.rollback().await)?)
    }

    async fn drop(&mut self, transaction: Resource<TransactionHandle>) -> wasmtime::Result<()> {
        // An open one is rolled back as the handle goes.
        if self.table.delete(transaction)?.0.is_some() {
            self.open_transactions -= 1;
        }
        Ok(())
    }
}
