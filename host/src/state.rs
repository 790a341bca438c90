//! The state directory: every deployed version of every service, the compiled-code cache
//! and the admin token. A restarted host comes back from here with each service's last
//! deployed version.
//!
//! ```text
//! <state dir>/
//!   admin-token                          generated at first start, mode 0600
//!   compiled/<digest>-<engine>.cwasm    precompiled code, per digest and engine build
//!   services/<service>/<digest>.wasm     the deployed components
//!   services/<service>/history.json      the deploys, oldest first (at most history_limit)
//!   databases/<database>.sqlite          the embedded backend's databases
//!   broker/messages.sqlite               the embedded broker's messages
//! ```
//!
//! Every file is written to a temporary name and renamed into place, so a crash never
//! leaves a half-written history or component behind.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What brought a version in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploySource {
    /// The component named in `platform.toml`, at the first start.
    Up,
    /// `platform deploy`.
    Deploy,
    /// `platform rollback`.
    Rollback,
    /// `platform up --watch` after a source change.
    Watch,
}

impl DeploySource {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploySource::Up => "up",
            DeploySource::Deploy => "deploy",
            DeploySource::Rollback => "rollback",
            DeploySource::Watch => "watch",
        }
    }
}

/// One deploy of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRecord {
    /// SHA-256 of the component, hex.
    pub digest: String,
    pub deployed_at: DateTime<Utc>,
    pub source: DeploySource,
}

/// Why the state directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} is not a valid deploy history: {cause}")]
    Corrupt {
        path: PathBuf,
        cause: serde_json::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |cause| StateError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

pub struct StateDir {
    root: PathBuf,
    history_limit: usize,
}

impl StateDir {
    /// Opens (creating it if needed) the state directory at `root`.
    pub fn open(root: &Path, history_limit: usize) -> Result<StateDir, StateError> {
        for dir in [
            root.to_path_buf(),
            root.join("compiled"),
            root.join("services"),
        ] {
            std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        Ok(StateDir {
            root: root.to_path_buf(),
            history_limit,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the embedded database backend keeps one SQLite file per database.
    pub fn databases_dir(&self) -> PathBuf {
        absolute(self.root.join("databases"))
    }

    /// The embedded broker's store.
    pub fn broker_file(&self) -> PathBuf {
        absolute(self.root.join("broker")).join("messages.sqlite")
    }

    fn service_dir(&self, service: &str) -> PathBuf {
        self.root.join("services").join(service)
    }

    fn history_path(&self, service: &str) -> PathBuf {
        self.service_dir(service).join("history.json")
    }

    fn component_path(&self, service: &str, digest: &str) -> PathBuf {
        self.service_dir(service).join(format!("{digest}.wasm"))
    }

    /// Where the precompiled code of `digest` for an engine build lives.
    pub fn compiled_path(&self, digest: &str, engine: &str) -> PathBuf {
        self.root
            .join("compiled")
            .join(format!("{digest}-{engine}.cwasm"))
    }

    /// The deploys of `service`, oldest first; empty for a service never deployed.
    pub fn history(&self, service: &str) -> Result<Vec<DeployRecord>, StateError> {
        let path = self.history_path(service);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|cause| StateError::Corrupt { path, cause })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(cause) => Err(StateError::Io { path, cause }),
        }
    }

    /// The bytes of a version of `service` that the history references.
    pub fn component(&self, service: &str, digest: &str) -> Result<Vec<u8>, StateError> {
        let path = self.component_path(service, digest);
        std::fs::read(&path).map_err(io_error(&path))
    }

    /// Stores `bytes` (if not stored yet) and appends `record` to the history of `service`,
    /// keeping the newest `history_limit` records and deleting components no record needs.
    pub fn record(
        &self,
        service: &str,
        bytes: &[u8],
        record: DeployRecord,
    ) -> Result<(), StateError> {
        let dir = self.service_dir(service);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let component = self.component_path(service, &record.digest);
        if !component.exists() {
            write_atomically(&component, bytes)?;
        }
        let mut history = match self.history(service) {
            Ok(history) => history,
            // Kept beside for an operator to look at; the service starts a new history.
            Err(StateError::Corrupt { path, cause }) => {
                let aside = path.with_extension("json.corrupt");
                tracing::warn!(path = %path.display(), %cause, aside = %aside.display(), "starting a new deploy history");
                std::fs::rename(&path, &aside).map_err(io_error(&path))?;
                Vec::new()
            }
            Err(error) => return Err(error),
        };
        history.push(record);
        let excess = history.len().saturating_sub(self.history_limit);
        let dropped: Vec<DeployRecord> = history.drain(..excess).collect();
        let json = serde_json::to_vec_pretty(&history).expect("JSON of plain records");
        write_atomically(&self.history_path(service), &json)?;

        let kept: BTreeSet<&str> = history.iter().map(|r| r.digest.as_str()).collect();
        for old in dropped.iter().filter(|r| !kept.contains(r.digest.as_str())) {
            let _ = std::fs::remove_file(self.component_path(service, &old.digest));
        }
        Ok(())
    }

    /// The admin API's token: read from `admin-token`, or generated and stored with mode
    /// 0600 the first time.
    pub fn admin_token(&self) -> Result<String, StateError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.root.join("admin-token");
        match std::fs::read_to_string(&path) {
            Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(cause) => return Err(StateError::Io { path, cause }),
        }
        let token = random_token();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error(&path))?;
        file.write_all(token.as_bytes()).map_err(io_error(&path))?;
        Ok(token)
    }

    /// The admin token if one was generated already (for the CLI, which never creates one).
    pub fn existing_admin_token(root: &Path) -> Option<String> {
        std::fs::read_to_string(root.join("admin-token"))
            .ok()
            .map(|token| token.trim().to_string())
            .filter(|token| !token.is_empty())
    }
}

/// An absolute path for logs, so a reader knows where the files are.
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

pub(crate) fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Writes `bytes` to a temporary file next to `path`, flushes it to disk, renames it into
/// place and flushes the directory: after a crash at any point, `path` holds either its old
/// content or the new one, never a part of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&temporary).map_err(io_error(&temporary))?;
    file.write_all(bytes).map_err(io_error(&temporary))?;
    file.sync_all().map_err(io_error(&temporary))?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(io_error(path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(digest: &str, source: DeploySource) -> DeployRecord {
        DeployRecord {
            digest: digest.into(),
            deployed_at: Utc::now(),
            source,
        }
    }

    #[test]
    fn keeps_the_newest_records_and_the_components_they_need() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path(), 2).unwrap();
        assert!(state.history("shop").unwrap().is_empty());
        state
            .record("shop", b"one", record("d1", DeploySource::Up))
            .unwrap();
        state
            .record("shop", b"two", record("d2", DeploySource::Deploy))
            .unwrap();
        state
            .record("shop", b"one", record("d1", DeploySource::Rollback))
            .unwrap();
        state
            .record("shop", b"three", record("d3", DeploySource::Deploy))
            .unwrap();

        let history = state.history("shop").unwrap();
        let digests: Vec<&str> = history.iter().map(|r| r.digest.as_str()).collect();
        assert_eq!(digests, ["d1", "d3"]);
        assert_eq!(history[0].source, DeploySource::Rollback);
        assert_eq!(state.component("shop", "d1").unwrap(), b"one");
        assert_eq!(state.component("shop", "d3").unwrap(), b"three");
        assert!(
            state.component("shop", "d2").is_err(),
            "no record needs d2 any more"
        );
    }

    #[test]
    fn a_corrupt_history_is_set_aside_by_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path(), 5).unwrap();
        state
            .record("shop", b"one", record("d1", DeploySource::Up))
            .unwrap();
        let history = dir.path().join("services/shop/history.json");
        std::fs::write(&history, b"{ truncated").unwrap();
        assert!(matches!(
            state.history("shop"),
            Err(StateError::Corrupt { .. })
        ));
        state
            .record("shop", b"two", record("d2", DeploySource::Up))
            .unwrap();
        let digests: Vec<String> = state
            .history("shop")
            .unwrap()
            .into_iter()
            .map(|r| r.digest)
            .collect();
        assert_eq!(digests, ["d2"]);
        assert_eq!(
            std::fs::read(history.with_extension("json.corrupt")).unwrap(),
            b"{ truncated"
        );
    }

    #[test]
    fn the_admin_token_is_generated_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path(), 2).unwrap();
        assert_eq!(StateDir::existing_admin_token(dir.path()), None);
        let token = state.admin_token().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(state.admin_token().unwrap(), token);
        assert_eq!(StateDir::existing_admin_token(dir.path()), Some(token));
        let mode = std::fs::metadata(dir.path().join("admin-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
