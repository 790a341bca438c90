//! The one `bindgen!` of the host: Rust types and traits for the `platform:service/service`
//! world. Capabilities implement the generated `Host` traits; the runtime calls the exports.

wasmtime::component::bindgen!({
    world: "service",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "platform:service/database.transaction": crate::capabilities::database::TransactionHandle,
    },
});

pub use self::platform::service::{
    auth, cache, config, database, http_types, identity_provider, logging, messaging,
    messaging_types, outgoing_http,
};
