//! The adapters: the ports of `crate::ports` implemented over the host's capabilities.
//!
//! `repository` is the SQL [`Store`](crate::ports::Store) (database capability),
//! `products` the [`ProductService`](crate::ports::ProductService) over the product
//! service's REST API (outgoing-http capability) and `events` the
//! [`EventBus`](crate::ports::EventBus) (messaging capability). They depend on `ports` and
//! `model` only; `routes` wires them into the service.

pub mod events;
pub mod products;
pub mod repository;
