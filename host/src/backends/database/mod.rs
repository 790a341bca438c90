//! A service's own relational database: PostgreSQL ([`postgres`]), or an embedded SQLite
//! file per service ([`sqlite`]), behind one [`Database`] trait with its own value, row and
//! error types. The `database` capability lowers them into WIT.

mod migrate;
mod postgres;
mod postgres_pool;
mod sqlite;
mod sqlite_guard;

pub use migrate::MigrateDatabaseError;
pub use postgres::{PostgresDatabase, PostgresSetupError};
pub use sqlite::{SqliteDatabase, SqliteSetupError};

use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A column value or a query parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// RFC 3339 text, UTC.
    Timestamp(String),
    /// Exact decimal text.
    Numeric(String),
    /// Hyphenated UUID text.
    Uuid(String),
}

/// The rows a query returned: column names, then one list of values per row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub values: Vec<Vec<Value>>,
}

/// Why a statement failed, in the same terms on both backends.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DatabaseError {
    /// Carries the violated constraint's name.
    #[error("unique constraint `{0}` violated")]
    UniqueViolation(String),
    #[error("foreign key constraint `{0}` violated")]
    ForeignKeyViolation(String),
    #[error("check constraint violated: {0}")]
    CheckViolation(String),
    /// The database could not be reached, or no connection was free in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("query failed: {0}")]
    QueryFailed(String),
}

/// A service's own database.
#[async_trait]
pub trait Database: Send + Sync {
    /// Applies the migrations in `migrations` that the database has not seen yet (at start
    /// and before a new version takes traffic). A missing folder means none.
    async fn migrate(&self, migrations: &Path) -> Result<(), MigrateDatabaseError>;
    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Rows, DatabaseError>;
    async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, DatabaseError>;
    async fn begin(&self) -> Result<Box<dyn Transaction>, DatabaseError>;
    /// OpenTelemetry's `db.system.name` of this backend.
    fn system(&self) -> &'static str;
}

/// An open transaction; dropping it without `commit` rolls it back.
#[async_trait]
pub trait Transaction: Send {
    async fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Rows, DatabaseError>;
    async fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, DatabaseError>;
    async fn commit(self: Box<Self>) -> Result<(), DatabaseError>;
    async fn rollback(self: Box<Self>) -> Result<(), DatabaseError>;
}

/// Where the services' databases live: one server, or one SQLite file each in a folder.
#[derive(Debug, Clone)]
pub enum DatabaseServer {
    /// `role_secret`: the fleet's shared secret that service role passwords are derived
    /// from, so that every host of the fleet sets the same one; without a fleet, each start
    /// sets a new random password.
    Postgres {
        url: String,
        role_secret: Option<String>,
    },
    Sqlite {
        dir: PathBuf,
    },
}

/// Settings shared by every service's database: its pool and what one statement may cost.
#[derive(Debug, Clone, Copy)]
pub struct DatabaseSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
    pub limits: ResultLimits,
}

/// The most one query may return; the host stops reading past them.
#[derive(Debug, Clone, Copy)]
pub struct ResultLimits {
    pub rows: usize,
    pub bytes: usize,
}

impl From<&crate::config::DatabaseConfig> for DatabaseSettings {
    fn from(settings: &crate::config::DatabaseConfig) -> DatabaseSettings {
        DatabaseSettings {
            max_connections: settings.max_connections,
            acquire_timeout: Duration::from_secs(settings.acquire_timeout_seconds),
            statement_timeout: Duration::from_millis(settings.statement_timeout_ms),
            limits: ResultLimits {
                rows: settings.max_result_rows,
                bytes: settings.max_result_mb * 1024 * 1024,
            },
        }
    }
}

/// Why a service's database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenDatabaseError {
    #[error(transparent)]
    Postgres(#[from] PostgresSetupError),
    #[error(transparent)]
    Sqlite(#[from] SqliteSetupError),
}

impl DatabaseServer {
    /// The server `[database]` names, else SQLite files in `embedded_dir`. Says which.
    pub fn from_config(
        settings: &crate::config::DatabaseConfig,
        embedded_dir: PathBuf,
        role_secret: Option<String>,
    ) -> DatabaseServer {
        match &settings.url {
            Some(url) => {
                tracing::info!(url = %crate::config::redact_url(url), "database: PostgreSQL, a database per service");
                DatabaseServer::Postgres {
                    url: url.clone(),
                    role_secret,
                }
            }
            None => {
                tracing::info!(files = %embedded_dir.display(), "database: embedded SQLite, a file per service (set DATABASE_URL or [database] url for PostgreSQL)");
                DatabaseServer::Sqlite { dir: embedded_dir }
            }
        }
    }

    /// Opens the database `name` (created if missing) on this server.
    pub async fn open(
        &self,
        name: &str,
        settings: DatabaseSettings,
    ) -> Result<Arc<dyn Database>, OpenDatabaseError> {
        Ok(match self {
            DatabaseServer::Postgres { url, role_secret } => Arc::new(
                PostgresDatabase::connect(url, name, settings, role_secret.as_deref()).await?,
            ),
            DatabaseServer::Sqlite { dir } => {
                Arc::new(SqliteDatabase::open(&dir.join(format!("{name}.sqlite")), settings).await?)
            }
        })
    }
}

/// A `timestamp` parameter (RFC 3339 text), checked before either backend binds it.
fn timestamp_param(text: &str) -> Result<chrono::DateTime<chrono::Utc>, DatabaseError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&chrono::Utc))
        .map_err(|_| {
            DatabaseError::QueryFailed(format!("timestamp parameter `{text}` is not RFC 3339"))
        })
}

/// A `numeric` parameter (decimal text).
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

/// Why reading a result stopped.
enum ReadRowsError {
    /// The statement failed: the backend classifies the error.
    Sql(sqlx::Error),
    /// A value could not be read, or the result is over its limits.
    Refused(DatabaseError),
}

/// Reads a result row by row into [`Rows`] (column names from the first row, values by
/// `value`), stopping as soon as it passes `limits`: the host never holds more of it.
async fn read_rows<R: sqlx::Row>(
    mut stream: futures::stream::BoxStream<'_, Result<R, sqlx::Error>>,
    limits: ResultLimits,
    value: impl Fn(&R, usize) -> Result<Value, DatabaseError>,
) -> Result<Rows, ReadRowsError> {
    use futures::TryStreamExt;
    use sqlx::Column;
    let mut rows = Rows::default();
    let mut bytes = 0usize;
    while let Some(row) = stream.try_next().await.map_err(ReadRowsError::Sql)? {
        if rows.values.is_empty() {
            rows.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
        }
        if rows.values.len() == limits.rows {
            return Err(ReadRowsError::Refused(DatabaseError::QueryFailed(format!(
                "the result has more than {} rows (database.max_result_rows)",
                limits.rows
            ))));
        }
        let values = (0..row.columns().len())
            .map(|index| value(&row, index))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ReadRowsError::Refused)?;
        bytes += values.iter().map(Value::size).sum::<usize>();
        if bytes > limits.bytes {
            return Err(ReadRowsError::Refused(DatabaseError::QueryFailed(format!(
                "the result is larger than {} MiB (database.max_result_mb)",
                limits.bytes >> 20
            ))));
        }
        rows.values.push(values);
    }
    Ok(rows)
}

impl Value {
    /// About what the value costs to hold and to copy to the guest.
    fn size(&self) -> usize {
        match self {
            Value::Text(text)
            | Value::Timestamp(text)
            | Value::Numeric(text)
            | Value::Uuid(text) => text.len(),
            Value::Bytes(bytes) => bytes.len(),
            Value::Null | Value::Boolean(_) | Value::Int(_) | Value::Float(_) => 8,
        }
    }
}
