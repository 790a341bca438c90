//! Per-call overhead of the Wasm boundary, in process and without I/O:
//! `cargo bench -p platform --bench per_call`.
//!
//! One iteration is what every request pays before its handler does any work: a new
//! `Store` (WASI context, limits, deadline), a new instance from the pre-instantiated
//! component, one `handle` call into the guest (the fixture's `GET /ok`, which builds a tiny
//! JSON response), and the response copied back out. The second figure is the same call
//! on a service with `instances.reuse` on, where a request takes the instance the last one
//! left.

#[allow(dead_code)]
#[path = "../tests/integration/support.rs"]
mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use platform::backends::database::{DatabaseServer, DatabaseSettings};
use platform::backends::http_client::HttpClient;
use platform::backends::token_validator::TokenValidator;
use platform::bindings::http_types::{Method, Request};
use platform::capabilities::{Backends, Grant, ServiceCapabilities};
use platform::config::{PlatformConfig, ServiceConfig};
use platform::runtime::{ComponentVersion, Runtime, Service};
use platform::state::DeploySource;
use std::sync::Arc;
use std::time::Duration;

/// The allocator the `platform` binary runs with (`src/main.rs`), so that this measures
/// the calls the host makes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn per_call(c: &mut Criterion) {
    support::cargo_build(&["misbehaving"], None).expect("building the fixture");
    let bytes = std::fs::read(support::component_path("misbehaving")).expect("the fixture");
    let tokio = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let platform: PlatformConfig = toml::from_str(
        r#"
        [auth]
        validate_url = "http://127.0.0.1:9/validate-token"
        [services.bench]
        port = 1
        component = "unused.wasm"
        grants = ["database", "logging"]
        database = "bench"
        [services.reusing]
        port = 2
        component = "unused.wasm"
        grants = ["database", "logging"]
        database = "bench"
        instances.reuse = true
        "#,
    )
    .expect("a configuration");
    let state = tempfile::tempdir().expect("a temporary directory");
    let (fresh, reusing) = tokio.block_on(async {
        let runtime = Runtime::new(64 << 20, 8, None).expect("a runtime");
        let bytes = Arc::new(bytes);
        (
            load(&runtime, &platform, "bench", &state, bytes.clone()).await,
            load(&runtime, &platform, "reusing", &state, bytes).await,
        )
    });
    let request = Request {
        route_index: 0, // GET /ok
        method: Method::Get,
        path: "/ok".into(),
        params: Vec::new(),
        query: Vec::new(),
        headers: vec![("accept".into(), "application/json".into())],
        body: Vec::new(),
        caller: None,
        request_id: "bench".into(),
    };

    for (name, (version, service)) in [
        ("new Store + instance + handle (GET /ok)", &fresh),
        ("reused instance + handle (GET /ok)", &reusing),
    ] {
        c.bench_function(name, |b| {
            b.to_async(&tokio).iter(|| async {
                let response = version
                    .handle_request(service, request.clone(), None, None)
                    .await
                    .expect("the call succeeds");
                assert_eq!(response.status, 200);
            })
        });
    }
}

/// The fixture loaded as `name` of `platform`, on an embedded database in `state`.
async fn load(
    runtime: &Runtime,
    platform: &PlatformConfig,
    name: &str,
    state: &tempfile::TempDir,
    bytes: Arc<Vec<u8>>,
) -> (ComponentVersion, Service) {
    let config: ServiceConfig = platform.services[name].clone();
    let http_client = HttpClient::new();
    let database = DatabaseServer::Sqlite {
        dir: state.path().to_path_buf(),
    }
    .open("bench", DatabaseSettings::from(&platform.database))
    .await
    .expect("an embedded database");
    let backends = Backends {
        database: Some(database),
        cache: None,
        broker: None,
        token_validator: Arc::new(
            TokenValidator::new(
                http_client.clone(),
                &platform.auth.validate_url,
                Duration::from_secs(1),
            )
            .expect("a URL"),
        ),
        http_client,
        identity: None,
    };
    let capabilities = ServiceCapabilities::build(&Grant {
        service: name,
        config: &config,
        platform,
        backends: &backends,
    })
    .expect("the grants");
    let service = Service::new(
        name,
        config.clone(),
        capabilities,
        state.path().join("migrations"),
        state.path().join("unused.wasm"),
    );
    let version = ComponentVersion::load(runtime, &service, bytes, DeploySource::Up)
        .await
        .expect("the fixture loads");
    (version, service)
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = per_call
}
criterion_main!(benches);
