//! Per-call overhead of the Wasm boundary, in process and without I/O:
//! `cargo bench -p platform --bench per_call`.
//!
//! One iteration is what every request pays before its handler does any work: a new
//! `Store` (WASI context, limits, deadline), a new instance from the pre-instantiated
//! component, one `handle` call into the guest (the fixture's `GET /ok`, which builds a tiny
//! JSON response), and the response copied back out.

#[allow(dead_code)]
#[path = "../tests/integration/support.rs"]
mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use platform::bindings::http_types::{Method, Request};
use platform::capabilities::auth::TokenValidator;
use platform::capabilities::outgoing_http::{http_client, OutgoingHttp};
use platform::capabilities::ServiceCapabilities;
use platform::config::ServiceConfig;
use platform::runtime::{CallLimits, ComponentVersion, Runtime};
use platform::state::DeploySource;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn per_call(c: &mut Criterion) {
    support::cargo_build(&["misbehaving"], None).expect("building the fixture");
    let bytes = std::fs::read(support::component_path("misbehaving")).expect("the fixture");
    let tokio = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let service: ServiceConfig = toml::from_str(
        r#"
        port = 1
        component = "unused.wasm"
        grants = ["database", "logging"]
        database = "unused"
        "#,
    )
    .expect("a service configuration");
    let (version, capabilities) = tokio.block_on(async {
        let runtime = Runtime::new(service.memory_limit_bytes(), None).expect("a runtime");
        let client = http_client();
        let capabilities = Arc::new(ServiceCapabilities {
            service: "bench".into(),
            database: None,
            cache: None,
            messaging: None,
            auth: Arc::new(
                TokenValidator::new(
                    client.clone(),
                    "http://127.0.0.1:9/validate-token",
                    Duration::from_secs(1),
                )
                .expect("a URL"),
            ),
            identity: None,
            outgoing_http: OutgoingHttp {
                client,
                allowed_hosts: Vec::new(),
            },
            config: BTreeMap::new(),
        });
        let version = ComponentVersion::load(
            &runtime,
            "bench",
            &service,
            &capabilities,
            Arc::new(bytes),
            DeploySource::Up,
        )
        .await
        .expect("the fixture loads");
        (version, capabilities)
    });
    let limits = CallLimits::for_service(&service);
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

    c.bench_function("new Store + instance + handle (GET /ok)", |b| {
        b.to_async(&tokio).iter(|| async {
            let response = version
                .handle_request(&capabilities, &limits, request.clone())
                .await
                .expect("the call succeeds");
            assert_eq!(response.status, 200);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = per_call
}
criterion_main!(benches);
