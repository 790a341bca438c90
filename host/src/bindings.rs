//! The one `bindgen!` of the host: Rust types and traits for the `platform:service/service`
//! world. Capabilities implement the generated `Host` traits; the runtime calls the exports.
//!
//! Every WIT error type maps to a [`Failure`](crate::capabilities::Failure): a host method
//! returns one `Result`, whose error is either the WIT error for the guest or a trap.

wasmtime::component::bindgen!({
    world: "service",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "platform:service/database.transaction": crate::capabilities::database::TransactionHandle,
    },
    trappable_error_type: {
        "platform:service/database.database-error" => crate::capabilities::database::DatabaseFailure,
        "platform:service/cache.cache-error" => crate::capabilities::cache::CacheFailure,
        "platform:service/messaging.publish-error" => crate::capabilities::messaging::PublishFailure,
        "platform:service/auth.auth-error" => crate::capabilities::auth::AuthFailure,
        "platform:service/identity-provider.token-error" => crate::capabilities::identity_provider::TokenFailure,
        "platform:service/outgoing-http.request-error" => crate::capabilities::outgoing_http::RequestFailure,
    },
});

pub use self::platform::service::{
    auth, cache, config, database, http_types, identity_provider, logging, messaging,
    messaging_types, outgoing_http,
};
