//! The capability tier: each test builds a service's capabilities the way the host does
//! (the table in `capabilities`, from a configuration and real embedded backends) and calls
//! the generated `Host` implementations directly, as a component's call would, without a
//! component or a socket.

use platform::backends::broker::{Broker, EmbeddedBroker};
use platform::backends::cache::{Cache, MemoryCache};
use platform::backends::database::{DatabaseServer, DatabaseSettings};
use platform::backends::http_client::HttpClient;
use platform::backends::token_validator::TokenValidator;
use platform::bindings::http_types::Method;
use platform::bindings::messaging_types::Message;
use platform::bindings::outgoing_http::{OutgoingRequest, RequestError};
use platform::bindings::{cache, database, logging, messaging, outgoing_http};
use platform::capabilities::{Backends, CallState, Failure, Grant, ServiceCapabilities};
use platform::config::PlatformConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::StoreLimitsBuilder;

/// Two services, `shop` and `billing`, with the grants of `grants` each.
fn config(shop_grants: &str, billing_grants: &str) -> PlatformConfig {
    toml::from_str(&format!(
        r#"
        [auth]
        validate_url = "http://127.0.0.1:9/validate-token"
        [[messaging.exchanges]]
        name = "orders"
        [[messaging.exchanges]]
        name = "payments"
        [services.shop]
        port = 1
        component = "shop.wasm"
        database = "shop"
        grants = [{shop_grants}]
        allowed_hosts = ["127.0.0.1:9"]
        publish_exchanges = ["orders"]
        [services.billing]
        port = 2
        component = "billing.wasm"
        grants = [{billing_grants}]
        "#
    ))
    .expect("a valid configuration")
}

struct Shared {
    cache: Arc<MemoryCache>,
    broker: Arc<EmbeddedBroker>,
    dir: tempfile::TempDir,
}

async fn shared() -> Shared {
    let dir = tempfile::tempdir().unwrap();
    // A queue bound to everything on `orders`: a message routed nowhere would be refused.
    let bound: platform::config::SubscriptionConfig = toml::from_str(
        r##"
        queue = "audit"
        exchange = "orders"
        routing_keys = ["#"]
        dead_letter_queue = "audit.dlq"
        "##,
    )
    .unwrap();
    let broker = EmbeddedBroker::open(
        &dir.path().join("broker.sqlite"),
        &config("", "").messaging.exchanges,
        &[bound],
    )
    .await
    .unwrap();
    Shared {
        cache: Arc::new(MemoryCache::new(1 << 20)),
        broker: Arc::new(broker),
        dir,
    }
}

/// A fresh call's state for `service`, its capabilities built by the host's table.
async fn call(platform: &PlatformConfig, shared: &Shared, service: &str) -> CallState {
    let config = &platform.services[service];
    let database = match &config.database {
        Some(name) if config.is_granted(platform::config::Capability::Database) => Some(
            DatabaseServer::Sqlite {
                dir: shared.dir.path().join("databases"),
            }
            .open(name, DatabaseSettings::from(&platform.database))
            .await
            .unwrap(),
        ),
        _ => None,
    };
    let http_client = HttpClient::new();
    let backends = Backends {
        database,
        cache: Some(shared.cache.clone() as Arc<dyn Cache>),
        broker: Some(shared.broker.clone() as Arc<dyn Broker>),
        token_validator: Arc::new(
            TokenValidator::new(
                http_client.clone(),
                &platform.auth.validate_url,
                Duration::from_secs(1),
            )
            .unwrap(),
        ),
        http_client,
        identity: None,
    };
    let capabilities = ServiceCapabilities::build(&Grant {
        service,
        config,
        platform,
        backends: &backends,
    })
    .unwrap();
    CallState::new(
        Arc::new(capabilities),
        Box::new(StoreLimitsBuilder::new().build()),
        "test".into(),
        Instant::now() + Duration::from_secs(10),
    )
}

#[tokio::test]
async fn cache_keys_are_namespaced_per_service() {
    let platform = config(r#""cache""#, r#""cache""#);
    let shared = shared().await;
    let mut shop = call(&platform, &shared, "shop").await;
    let mut billing = call(&platform, &shared, "billing").await;

    cache::Host::set(&mut shop, "product:1".into(), b"shop's".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(
        cache::Host::get(&mut billing, "product:1".into())
            .await
            .unwrap(),
        None,
        "billing read shop's key"
    );
    cache::Host::set(
        &mut billing,
        "product:1".into(),
        b"billing's".to_vec(),
        Some(60),
    )
    .await
    .unwrap();
    assert_eq!(
        cache::Host::get(&mut shop, "product:1".into())
            .await
            .unwrap()
            .as_deref(),
        Some(&b"shop's"[..])
    );
    // In the shared backend, each key carries its service's prefix.
    assert_eq!(
        shared.cache.get("shop:product:1").await.unwrap().as_deref(),
        Some(&b"shop's"[..])
    );
    assert_eq!(
        shared
            .cache
            .get("billing:product:1")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"billing's"[..])
    );
    assert!(!cache::Host::delete(&mut billing, "nothing".into())
        .await
        .unwrap());
    assert!(matches!(
        cache::Host::get(&mut shop, String::new()).await,
        Err(Failure::Error(cache::CacheError::Invalid(_)))
    ));
}

fn message(exchange: &str) -> Message {
    Message {
        exchange: exchange.into(),
        routing_key: "order.created".into(),
        payload: b"{}".to_vec(),
        content_type: Some("application/json".into()),
        headers: Vec::new(),
    }
}

#[tokio::test]
async fn a_service_publishes_only_to_its_exchanges() {
    let platform = config(r#""messaging""#, "");
    let shared = shared().await;
    let mut shop = call(&platform, &shared, "shop").await;
    messaging::Host::publish(&mut shop, message("orders"))
        .await
        .expect("orders is granted");
    assert!(matches!(
        messaging::Host::publish(&mut shop, message("payments")).await,
        Err(Failure::Error(messaging::PublishError::NotAllowed(reason))) if reason.contains("payments")
    ));
    // The broker's own headers cannot be forged: a retry count would dead-letter at will.
    let mut forged = message("orders");
    forged.headers.push(("X-Retry-Count".into(), "99".into()));
    assert!(matches!(
        messaging::Host::publish(&mut shop, forged).await,
        Err(Failure::Error(messaging::PublishError::NotAllowed(reason))) if reason.contains("X-Retry-Count")
    ));
}

fn request(url: &str) -> OutgoingRequest {
    OutgoingRequest {
        method: Method::Get,
        url: url.into(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout_ms: Some(2000),
    }
}

#[tokio::test]
async fn outgoing_http_reaches_only_the_allowed_hosts() {
    let platform = config(r#""outgoing-http""#, "");
    let shared = shared().await;
    let mut shop = call(&platform, &shared, "shop").await;
    assert!(matches!(
        outgoing_http::Host::send(&mut shop, request("http://127.0.0.1:8/x")).await,
        Err(Failure::Error(RequestError::NotAllowed(_)))
    ));
    assert!(matches!(
        outgoing_http::Host::send(&mut shop, request("https://127.0.0.1:9/x")).await,
        Err(Failure::Error(RequestError::InvalidUrl(_)))
    ));
    // Allowed, and nothing listens there: the request got past the allow-list.
    assert!(matches!(
        outgoing_http::Host::send(&mut shop, request("http://127.0.0.1:9/x")).await,
        Err(Failure::Error(RequestError::Unavailable(_)))
    ));
}

#[tokio::test]
async fn an_ungranted_call_traps_naming_the_capability() {
    let platform = config(r#""logging""#, "");
    let shared = shared().await;
    let mut billing = call(&platform, &shared, "billing").await;
    let Err(Failure::Trap(trap)) = cache::Host::get(&mut billing, "k".into()).await else {
        panic!("an ungranted cache call must trap");
    };
    assert!(
        trap.to_string()
            .contains("`cache` is not granted to service `billing`"),
        "{trap}"
    );
    assert!(
        logging::Host::log(&mut billing, logging::Level::Info, "x".into())
            .await
            .is_err()
    );
    let mut shop = call(&platform, &shared, "shop").await;
    logging::Host::log(&mut shop, logging::Level::Info, "granted".into())
        .await
        .expect("shop may log");
}

#[tokio::test]
async fn database_errors_reach_the_guest_in_wit_terms() {
    let platform = config(r#""database""#, "");
    let shared = shared().await;
    let mut shop = call(&platform, &shared, "shop").await;
    database::Host::execute(
        &mut shop,
        "CREATE TABLE items (name TEXT NOT NULL)".into(),
        Vec::new(),
    )
    .await
    .unwrap();
    database::Host::execute(
        &mut shop,
        "CREATE UNIQUE INDEX items_name_key ON items (name)".into(),
        Vec::new(),
    )
    .await
    .unwrap();
    let insert = || {
        (
            "INSERT INTO items (name) VALUES ($1)".to_string(),
            vec![database::Value::Text("a".into())],
        )
    };
    let (sql, params) = insert();
    database::Host::execute(&mut shop, sql, params)
        .await
        .unwrap();
    let (sql, params) = insert();
    assert!(matches!(
        database::Host::execute(&mut shop, sql, params).await,
        Err(Failure::Error(database::DatabaseError::UniqueViolation(name))) if name == "items_name_key"
    ));

    let transaction = database::Host::begin(&mut shop).await.unwrap();
    let again = wasmtime::component::Resource::new_borrow(transaction.rep());
    database::HostTransaction::commit(&mut shop, transaction)
        .await
        .unwrap();
    assert!(matches!(
        database::HostTransaction::query(&mut shop, again, "SELECT 1".into(), Vec::new()).await,
        Err(Failure::Error(database::DatabaseError::InvalidState(_)))
    ));
}
