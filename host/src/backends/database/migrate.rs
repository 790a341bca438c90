//! Reading a service's migrations: `migrations/<service>/<dialect>/` where a service keeps
//! one set per backend (their SQL differs), otherwise `migrations/<service>/` itself.

use std::path::{Path, PathBuf};

/// Why a service's migrations could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrateDatabaseError {
    #[error("cannot read the migrations in {path}: {cause}")]
    Read { path: PathBuf, cause: String },
    #[error("migrating database `{database}` failed: {cause}")]
    Apply { database: String, cause: String },
}

/// The migrations a backend of `dialect` applies; `None` if the service has none.
pub(super) async fn migrator(
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
