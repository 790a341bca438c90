//! `platform up --watch`: when a file under a service's `watch` paths changes, rebuild that
//! service's component and deploy it through the same path as `platform deploy`. A build
//! that fails prints the compiler's errors and leaves the running version alone; the other
//! services and the requests in flight are never touched.

use crate::backends::fleet::Strategy;
use crate::build::{build_component, BuildComponentError};
use crate::config::PlatformConfig;
use crate::runtime::Registry;
use crate::state::DeploySource;
use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{new_debouncer, DebounceEventResult};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Quiet time after the last change before a rebuild starts (editors write in bursts).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("no service has `watch` paths in the configuration")]
    NothingToWatch,
    #[error("cannot watch {}: {cause}", path.display())]
    Watch { path: PathBuf, cause: String },
}

/// Watches until `shutdown`; returns an error only if watching could not start.
pub async fn watch(
    registry: Arc<Registry>,
    config: PlatformConfig,
    shutdown: CancellationToken,
) -> Result<(), WatchError> {
    let watched: Vec<(String, Vec<PathBuf>)> = config
        .services
        .iter()
        .filter(|(_, service)| service.build.is_some() && !service.watch.is_empty())
        .map(|(name, service)| {
            let paths = service
                .watch
                .iter()
                .map(|path| config.resolve(path))
                .collect();
            (name.clone(), paths)
        })
        .collect();
    if watched.is_empty() {
        return Err(WatchError::NothingToWatch);
    }

    let (changes, mut changed) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| match result {
        Ok(events) => {
            let _ = changes.send(events.into_iter().map(|event| event.path).collect());
        }
        Err(error) => tracing::warn!(%error, "file watching error"),
    })
    .map_err(|error| WatchError::Watch {
        path: config.base_dir.clone(),
        cause: error.to_string(),
    })?;
    let roots: BTreeSet<&PathBuf> = watched.iter().flat_map(|(_, paths)| paths).collect();
    for root in roots {
        debouncer
            .watcher()
            .watch(root, RecursiveMode::Recursive)
            .map_err(|error| WatchError::Watch {
                path: root.clone(),
                cause: error.to_string(),
            })?;
        tracing::info!(path = %root.display(), "watching");
    }

    loop {
        let paths = tokio::select! {
            paths = changed.recv() => match paths {
                Some(paths) => paths,
                None => return Ok(()),
            },
            _ = shutdown.cancelled() => return Ok(()),
        };
        let services: Vec<&String> = watched
            .iter()
            .filter(|(_, roots)| {
                paths
                    .iter()
                    .any(|path| roots.iter().any(|root| path.starts_with(root)))
            })
            .map(|(name, _)| name)
            .collect();
        for service in services {
            rebuild_and_deploy(&registry, &config, service).await;
        }
    }
}

async fn rebuild_and_deploy(registry: &Registry, config: &PlatformConfig, service: &str) {
    let running = registry
        .service(service)
        .map(|s| s.current.load().short_digest().to_string())
        .unwrap_or_default();
    eprintln!("{service}: sources changed, rebuilding");
    let build_config = config.clone();
    let name = service.to_string();
    let built = tokio::task::spawn_blocking(move || build_component(&build_config, &name))
        .await
        .expect("a build does not panic");
    let artifact = match built {
        Ok(artifact) => artifact,
        Err(BuildComponentError::Failed { output, status, .. }) => {
            eprintln!("{output}");
            eprintln!("{service}: build failed ({status}); version {running} keeps serving");
            tracing::error!(service, %status, "watch: build failed, the running version keeps serving");
            return;
        }
        Err(error) => {
            eprintln!("{error}; version {running} keeps serving");
            tracing::error!(service, %error, "watch: build failed, the running version keeps serving");
            return;
        }
    };
    let bytes = match tokio::fs::read(&artifact).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(service, %error, path = %artifact.display(), "watch: cannot read the built component");
            return;
        }
    };
    match registry
        .deploy(service, bytes, DeploySource::Watch, Strategy::All)
        .await
    {
        Ok(outcome) => eprintln!(
            "{service}: now serving {} (was {}), swapped in {:.0?}",
            &outcome.digest[..12],
            &outcome.previous[..12],
            outcome.swap_time
        ),
        Err(error) => {
            eprintln!("{service}: {error}; version {running} keeps serving");
            tracing::error!(service, %error, "watch: deploy refused");
        }
    }
}
