//! PostgreSQL through sqlx: one pool and one database per service, created if missing,
//! with the service's migrations applied at start.

use super::{Database, DatabaseError, MigrateDatabaseError, Rows, Transaction, Value};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Column, ConnectOptions, Connection, Executor, PgPool, Postgres, Row, TypeInfo};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Why a service's database could not be prepared at start.
#[derive(Debug, thiserror::Error)]
pub enum PostgresSetupError {
    #[error("invalid database URL: {0}")]
    Url(#[source] sqlx::Error),
    #[error("cannot reach PostgreSQL at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot create database `{database}`: {source}")]
    Create {
        database: String,
        source: sqlx::Error,
    },
    #[error("cannot read migrations in {path}: {source}")]
    Migrations {
        path: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("migration of database `{database}` failed: {source}")]
    Migrate {
        database: String,
        source: sqlx::migrate::MigrateError,
    },
}

pub struct PostgresDatabase {
    pool: PgPool,
    database: String,
}

impl PostgresDatabase {
    /// Creates `database` on the server behind `server_url` if it does not exist and opens
    /// a pool on it.
    pub async fn connect(
        server_url: &str,
        database: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<PostgresDatabase, PostgresSetupError> {
        let server = PgConnectOptions::from_str(server_url).map_err(PostgresSetupError::Url)?;
        let redacted = crate::config::redact_url(server_url);
        let mut admin = tokio::time::timeout(
            acquire_timeout.max(Duration::from_secs(5)),
            server.connect(),
        )
        .await
        .map_err(|_| PostgresSetupError::Connect {
            url: redacted.clone(),
            source: sqlx::Error::PoolTimedOut,
        })?
        .map_err(|source| PostgresSetupError::Connect {
            url: redacted.clone(),
            source,
        })?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(database)
                .fetch_optional(&mut admin)
                .await
                .map_err(|source| PostgresSetupError::Connect {
                    url: redacted.clone(),
                    source,
                })?;
        if exists.is_none() {
            // The name was checked to be [a-z0-9_-] when the config was loaded, so quoting it
            // as an identifier is safe; CREATE DATABASE takes no parameters.
            let created = admin
                .execute(format!("CREATE DATABASE \"{database}\"").as_str())
                .await;
            match created {
                Ok(_) => tracing::info!(database, "created database"),
                // Another host created it at the same moment: that is what we wanted.
                Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P04") => {}
                Err(source) => {
                    return Err(PostgresSetupError::Create {
                        database: database.into(),
                        source,
                    })
                }
            }
        }
        let _ = admin.close().await;

        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(server.database(database));
        Ok(PostgresDatabase {
            pool,
            database: database.to_string(),
        })
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

fn bind<'q>(sql: &'q str, params: Vec<Value>) -> Result<PgQuery<'q>, DatabaseError> {
    let mut query = sqlx::query(sql);
    for param in params {
        query = match param {
            // An untyped NULL is not expressible over the binary protocol: it travels as a
            // NULL text, which PostgreSQL casts into text columns (or via `$n::type`).
            Value::Null => query.bind(None::<String>),
            Value::Boolean(value) => query.bind(value),
            Value::Int(value) => query.bind(value),
            Value::Float(value) => query.bind(value),
            Value::Text(value) => query.bind(value),
            Value::Bytes(value) => query.bind(value),
            Value::Timestamp(text) => query.bind(super::timestamp_param(&text)?),
            Value::Numeric(text) => query.bind(super::numeric_param(&text)?),
            Value::Uuid(text) => query.bind(super::uuid_param(&text)?),
        };
    }
    Ok(query)
}

fn column_value(row: &PgRow, index: usize) -> Result<Value, DatabaseError> {
    fn get<'r, T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>>(
        row: &'r PgRow,
        index: usize,
    ) -> Result<Option<T>, DatabaseError> {
        row.try_get::<Option<T>, _>(index)
            .map_err(|error| DatabaseError::QueryFailed(error.to_string()))
    }
    let type_name = row.columns()[index].type_info().name().to_string();
    let value = match type_name.as_str() {
        "BOOL" => get::<bool>(row, index)?.map(Value::Boolean),
        "INT2" => get::<i16>(row, index)?.map(|v| Value::Int(v.into())),
        "INT4" => get::<i32>(row, index)?.map(|v| Value::Int(v.into())),
        "INT8" => get::<i64>(row, index)?.map(Value::Int),
        "FLOAT4" => get::<f32>(row, index)?.map(|v| Value::Float(v.into())),
        "FLOAT8" => get::<f64>(row, index)?.map(Value::Float),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => {
            get::<String>(row, index)?.map(Value::Text)
        }
        "BYTEA" => get::<Vec<u8>>(row, index)?.map(Value::Bytes),
        "TIMESTAMPTZ" => get::<DateTime<Utc>>(row, index)?.map(super::timestamp_value),
        "TIMESTAMP" => {
            get::<NaiveDateTime>(row, index)?.map(|t| super::timestamp_value(t.and_utc()))
        }
        "NUMERIC" => {
            get::<rust_decimal::Decimal>(row, index)?.map(|d| Value::Numeric(d.to_string()))
        }
        "UUID" => get::<uuid::Uuid>(row, index)?.map(|u| Value::Uuid(u.to_string())),
        other => {
            return Err(DatabaseError::QueryFailed(format!(
                "column `{}` has type {other}, which the database interface does not carry",
                row.columns()[index].name()
            )))
        }
    };
    Ok(value.unwrap_or(Value::Null))
}

/// Maps sqlx's error onto [`DatabaseError`]: constraint violations by SQLSTATE class 23,
/// connectivity problems to `unavailable`.
fn classify(error: sqlx::Error) -> DatabaseError {
    match error {
        sqlx::Error::Database(db) => {
            let constraint = db.constraint().unwrap_or_default().to_string();
            match db.code().as_deref() {
                Some("23505") => DatabaseError::UniqueViolation(constraint),
                Some("23503") => DatabaseError::ForeignKeyViolation(constraint),
                Some("23514") | Some("23502") => {
                    DatabaseError::CheckViolation(if constraint.is_empty() {
                        db.message().to_string()
                    } else {
                        constraint
                    })
                }
                // Class 08 (connection exception), 57P0x (server shutting down).
                Some(code) if code.starts_with("08") || code.starts_with("57P") => {
                    DatabaseError::Unavailable(db.message().to_string())
                }
                _ => DatabaseError::QueryFailed(db.message().to_string()),
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => DatabaseError::Unavailable(error.to_string()),
        other => DatabaseError::QueryFailed(other.to_string()),
    }
}

#[async_trait]
impl Database for PostgresDatabase {
    async fn migrate(&self, migrations: &Path) -> Result<(), MigrateDatabaseError> {
        let Some(migrator) = super::migrate::migrator(migrations, "postgres").await? else {
            return Ok(());
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|cause| MigrateDatabaseError::Apply {
                database: self.database.clone(),
                cause: cause.to_string(),
            })
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Rows, DatabaseError> {
        let rows = bind(sql, params)?
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        super::to_rows(&rows, column_value)
    }

    async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, DatabaseError> {
        Ok(bind(sql, params)?
            .execute(&self.pool)
            .await
            .map_err(classify)?
            .rows_affected())
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>, DatabaseError> {
        let transaction = self.pool.begin().await.map_err(classify)?;
        Ok(Box::new(PostgresTransaction(transaction)))
    }
}

struct PostgresTransaction(sqlx::Transaction<'static, Postgres>);

#[async_trait]
impl Transaction for PostgresTransaction {
    async fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Rows, DatabaseError> {
        let rows = bind(sql, params)?
            .fetch_all(&mut *self.0)
            .await
            .map_err(classify)?;
        super::to_rows(&rows, column_value)
    }

    async fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, DatabaseError> {
        Ok(bind(sql, params)?
            .execute(&mut *self.0)
            .await
            .map_err(classify)?
            .rows_affected())
    }

    async fn commit(self: Box<Self>) -> Result<(), DatabaseError> {
        self.0.commit().await.map_err(classify)
    }

    async fn rollback(self: Box<Self>) -> Result<(), DatabaseError> {
        self.0.rollback().await.map_err(classify)
    }
}
