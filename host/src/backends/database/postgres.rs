//! PostgreSQL through sqlx: one database per service, created if missing, and one role
//! per service that the service's pool logs in as.
//!
//! The configured URL's credentials (often a superuser) only create databases and roles.
//! A service's role is no superuser, may create neither databases nor roles, owns its
//! database's `public` schema and everything in it, and may connect to its own database
//! only: `CONNECT` on every service database is revoked from PUBLIC. So a component's SQL
//! cannot read another service's data, run `COPY ... TO PROGRAM`, read `pg_authid` or
//! `CREATE EXTENSION`. Its password never leaves the host: new at every start, or, in a
//! fleet, derived from the fleet's shared secret so that hosts never change it under one
//! another's pools.

use super::postgres_pool::{AcquireError, Lease, PostgresPool};
use super::{
    Database, DatabaseError, DatabaseSettings, MigrateDatabaseError, ReadRowsError, ResultLimits,
    Rows, Transaction, Value,
};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Column, ConnectOptions, Connection, Executor, Postgres, Row, TypeInfo};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
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
    pool: Arc<PostgresPool>,
    database: String,
    limits: ResultLimits,
}

impl PostgresDatabase {
    /// Creates `database` and its role on the server behind `server_url` if they do not
    /// exist, hands the database's objects to the role, and opens a pool that logs in as it.
    pub async fn connect(
        server_url: &str,
        database: &str,
        settings: DatabaseSettings,
        role_secret: Option<&str>,
    ) -> Result<PostgresDatabase, PostgresSetupError> {
        let server = PgConnectOptions::from_str(server_url).map_err(PostgresSetupError::Url)?;
        let redacted = crate::config::redact_url(server_url);
        let connect_timeout = settings.acquire_timeout.max(Duration::from_secs(5));
        let connect = |options: PgConnectOptions| {
            let redacted = redacted.clone();
            async move {
                tokio::time::timeout(connect_timeout, options.connect())
                    .await
                    .map_err(|_| PostgresSetupError::Connect {
                        url: redacted.clone(),
                        source: sqlx::Error::PoolTimedOut,
                    })?
                    .map_err(|source| PostgresSetupError::Connect {
                        url: redacted,
                        source,
                    })
            }
        };
        let setup = |source| PostgresSetupError::Create {
            database: database.into(),
            source,
        };
        // The name was checked to be [a-z0-9_-] when the config was loaded, so quoting it
        // as an identifier is safe; these statements take no parameters.
        let role = database;
        let password = match role_secret {
            Some(secret) => derived_password(secret, role),
            None => random_password(),
        };
        let mut admin = connect(server.clone()).await?;
        // Hosts of a fleet starting together would race to create the same database and
        // role (PostgreSQL answers a unique violation, not "already exists"): the setup of
        // one database is serialised across hosts. The lock goes with the connection.
        sqlx::query("SELECT pg_advisory_lock(hashtext('platform database setup ' || $1))")
            .bind(database)
            .execute(&mut admin)
            .await
            .map_err(setup)?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(database)
                .fetch_optional(&mut admin)
                .await
                .map_err(setup)?;
        if exists.is_none() {
            match admin
                .execute(format!("CREATE DATABASE \"{database}\"").as_str())
                .await
            {
                Ok(_) => tracing::info!(database, "created database"),
                // Another host created it at the same moment: that is what we wanted.
                Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P04") => {}
                Err(source) => return Err(setup(source)),
            }
        }
        let role_exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
                .bind(role)
                .fetch_optional(&mut admin)
                .await
                .map_err(setup)?;
        let verb = if role_exists.is_some() {
            "ALTER"
        } else {
            "CREATE"
        };
        for statement in [
            format!(
                "{verb} ROLE \"{role}\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE \
                 NOREPLICATION NOBYPASSRLS PASSWORD '{password}'"
            ),
            format!("REVOKE ALL ON DATABASE \"{database}\" FROM PUBLIC"),
            format!("GRANT CONNECT, TEMPORARY ON DATABASE \"{database}\" TO \"{role}\""),
        ] {
            admin.execute(statement.as_str()).await.map_err(setup)?;
        }

        // Inside the database: the role owns the schema and every table in it (tables a
        // host of an earlier version created as the admin user included).
        let mut inside = connect(server.clone().database(database)).await?;
        let handovers: Vec<String> = sqlx::query_scalar(
            "SELECT format('ALTER TABLE %I.%I OWNER TO %I', schemaname, tablename, $1::text) \
             FROM pg_tables WHERE schemaname = 'public' AND tableowner <> $1 \
             UNION ALL \
             SELECT format('ALTER VIEW %I.%I OWNER TO %I', schemaname, viewname, $1::text) \
             FROM pg_views WHERE schemaname = 'public' AND viewowner <> $1",
        )
        .bind(role)
        .fetch_all(&mut inside)
        .await
        .map_err(setup)?;
        let schema = [
            format!("ALTER SCHEMA public OWNER TO \"{role}\""),
            "REVOKE ALL ON SCHEMA public FROM PUBLIC".to_string(),
        ];
        for statement in schema.iter().chain(&handovers) {
            inside.execute(statement.as_str()).await.map_err(setup)?;
        }
        let _ = inside.close().await;
        let _ = admin.close().await; // and with it the setup lock

        let statement_timeout = format!("{}ms", settings.statement_timeout.as_millis());
        // `PostgresPool` keeps the connections it opens: sqlx's own pings on the way out
        // and back are what it saves (postgres_pool.rs).
        let opener = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(0)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(
                server
                    .database(database)
                    .username(role)
                    .password(&password)
                    .options([("statement_timeout", statement_timeout.as_str())]),
            );
        let pool = PostgresPool::new(opener, settings.max_connections, settings.acquire_timeout);
        Ok(PostgresDatabase {
            pool,
            database: database.to_string(),
            limits: settings.limits,
        })
    }
}

/// A service role's password: 32 random hex digits (safe inside a SQL string literal).
fn random_password() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The password every host of a fleet gives `role`: 32 hex digits of SHA-256 over the
/// fleet's secret and the role's name.
fn derived_password(secret: &str, role: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(secret.as_bytes())
        .chain_update([0])
        .chain_update(role.as_bytes())
        .finalize();
    hex::encode(&digest[..16])
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
        let apply = |cause: String| MigrateDatabaseError::Apply {
            database: self.database.clone(),
            cause,
        };
        let mut lease = self
            .pool
            .acquire()
            .await
            .map_err(|e| apply(e.to_string()))?;
        let result = migrator.run_direct(lease.start()).await;
        // A failed migration may have left the connection in any state: it is not reused.
        lease
            .settle(result, |_| true)
            .map_err(|cause| apply(cause.to_string()))
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Rows, DatabaseError> {
        let query = bind(sql, params)?;
        let mut lease = self.lease().await?;
        let result = read(query.fetch(lease.start()), self.limits).await;
        lease.settle(result, breaks_connection)
    }

    async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, DatabaseError> {
        let query = bind(sql, params)?;
        let mut lease = self.lease().await?;
        let result = query.execute(lease.start()).await.map_err(classify);
        Ok(lease.settle(result, breaks_connection)?.rows_affected())
    }

    fn system(&self) -> &'static str {
        "postgresql"
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>, DatabaseError> {
        let mut lease = self.lease().await?;
        let result = lease.start().execute("BEGIN").await.map_err(classify);
        lease.settle(result, breaks_connection)?;
        lease.set_in_transaction(true);
        Ok(Box::new(PostgresTransaction(lease, self.limits)))
    }
}

impl PostgresDatabase {
    async fn lease(&self) -> Result<Lease, DatabaseError> {
        self.pool.acquire().await.map_err(|error| match error {
            AcquireError::TimedOut(_) => DatabaseError::Unavailable(error.to_string()),
            AcquireError::Open(cause) => match classify(cause) {
                // A refused login or a missing database is as unavailable as no server.
                DatabaseError::QueryFailed(message) => DatabaseError::Unavailable(message),
                other => other,
            },
        })
    }
}

/// Whether an error means the connection itself is unusable (closed, broken, the server
/// going away), not just the statement.
fn breaks_connection(error: &DatabaseError) -> bool {
    matches!(error, DatabaseError::Unavailable(_))
}

/// A result read row by row within `limits`.
async fn read(
    rows: futures::stream::BoxStream<'_, Result<PgRow, sqlx::Error>>,
    limits: ResultLimits,
) -> Result<Rows, DatabaseError> {
    super::read_rows(rows, limits, column_value)
        .await
        .map_err(|error| match error {
            ReadRowsError::Sql(error) => classify(error),
            ReadRowsError::Refused(error) => error,
        })
}

/// A transaction on a leased connection; dropped without a commit, it is rolled back
/// before the connection serves anyone else.
struct PostgresTransaction(Lease, ResultLimits);

impl PostgresTransaction {
    /// Ends the transaction with `statement`. Even a failed COMMIT ends it (PostgreSQL
    /// rolls back), unless the connection broke, and then the lease closes it.
    async fn end(mut self: Box<Self>, statement: &str) -> Result<(), DatabaseError> {
        let lease = &mut self.0;
        let result = lease.start().execute(statement).await.map_err(classify);
        let result = lease.settle(result, breaks_connection);
        lease.set_in_transaction(false);
        result.map(|_| ())
    }
}

#[async_trait]
impl Transaction for PostgresTransaction {
    async fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Rows, DatabaseError> {
        let query = bind(sql, params)?;
        let result = read(query.fetch(self.0.start()), self.1).await;
        self.0.settle(result, breaks_connection)
    }

    async fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, DatabaseError> {
        let query = bind(sql, params)?;
        let result = query.execute(self.0.start()).await.map_err(classify);
        Ok(self.0.settle(result, breaks_connection)?.rows_affected())
    }

    async fn commit(self: Box<Self>) -> Result<(), DatabaseError> {
        self.end("COMMIT").await
    }

    async fn rollback(self: Box<Self>) -> Result<(), DatabaseError> {
        self.end("ROLLBACK").await
    }
}

#[cfg(test)]
mod tests {
    use super::derived_password;

    #[test]
    fn every_host_of_a_fleet_derives_the_same_password_for_a_role() {
        let password = derived_password("fleet secret", "order_service");
        assert_eq!(password, derived_password("fleet secret", "order_service"));
        assert_eq!(password.len(), 32);
        assert!(
            password.bytes().all(|b| b.is_ascii_hexdigit()),
            "safe in a SQL literal"
        );
        assert_ne!(password, derived_password("fleet secret", "user_service"));
        assert_ne!(
            password,
            derived_password("another secret", "order_service")
        );
    }
}
