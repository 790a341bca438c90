//! The ports: what the order service needs from its surroundings, and the data that
//! crosses them.
//!
//! [`Store`] / [`StoreTx`] are the database (implemented by `adapters::repository`),
//! [`ProductService`] is the product service's stock API (`adapters::products`) and
//! [`EventBus`] is the message broker (`adapters::events`). The service's rules are written
//! against these traits only, so that they are unit-tested natively with in-memory fakes
//! (`testing.rs`). Domain types the ports carry (orders, events) live in `model`.

use crate::model::{Order, OrderDraft, OrderStatus, OutboxEvent, StockChange};
use platform_guest::pagination::Page;

pub use platform_guest::db::StoreError;

/// The order service's database, outside of transactions.
pub trait Store {
    type Tx: StoreTx;

    fn begin(&self) -> Result<Self::Tx, StoreError>;
    fn find_order(&self, id: i64) -> Result<Option<Order>, StoreError>;
    /// The user's orders, newest first (`created_at DESC, id DESC`).
    fn list_orders(&self, user_id: i64, page: Page) -> Result<Vec<Order>, StoreError>;
    /// Ids of outbox rows left behind (older than a grace period in which the request
    /// that wrote them publishes them itself), oldest first.
    fn stale_event_ids(&self, limit: i64) -> Result<Vec<i64>, StoreError>;
    /// Deletes an outbox row the request that wrote it has published (committed at once).
    fn delete_event(&self, id: i64) -> Result<(), StoreError>;
    /// Writes a stock change down (committed at once); returns it with its row id.
    fn record_stock_change(&self, change: &StockChange) -> Result<StockChange, StoreError>;
    /// Forgets a settled stock change.
    fn forget_stock_change(&self, id: i64) -> Result<(), StoreError>;
    /// Stock changes written more than `older_than_seconds` ago, oldest first.
    fn unsettled_stock_changes(
        &self,
        older_than_seconds: i64,
        limit: i64,
    ) -> Result<Vec<StockChange>, StoreError>;
}

/// An open transaction. Dropping it without [`StoreTx::commit`] rolls it back.
pub trait StoreTx {
    fn insert_order(&mut self, draft: &OrderDraft) -> Result<Order, StoreError>;
    /// Sets the status of an order that is not cancelled (locking its row) and returns it;
    /// `None` when no such order exists or it is already cancelled.
    fn set_status(&mut self, id: i64, status: OrderStatus) -> Result<Option<Order>, StoreError>;
    /// Deletes an order (locking its row) and returns it as it was; `None` if absent.
    fn delete_order(&mut self, id: i64) -> Result<Option<Order>, StoreError>;
    /// Writes a stock change down with the transaction; returns it with its row id.
    fn insert_stock_change(&mut self, change: &StockChange) -> Result<StockChange, StoreError>;
    /// Forgets a stock change with the transaction (its reservation became an order's).
    fn delete_stock_change(&mut self, id: i64) -> Result<(), StoreError>;
    /// Writes an event to the outbox; returns its row id.
    fn insert_event(&mut self, event: &OutboxEvent) -> Result<i64, StoreError>;
    /// Deletes an outbox row (locking it) and returns it; `None` when another request
    /// already took it.
    fn take_event(&mut self, id: i64) -> Result<Option<OutboxEvent>, StoreError>;
    fn commit(self) -> Result<(), StoreError>;
    fn rollback(self);
}

/// The product service's stock operations, each sent with the change's `Idempotency-Key`
/// and authorization: the product service applies a key once and answers a repeat with
/// its first answer.
pub trait ProductService {
    fn reserve(&self, change: &StockChange) -> Result<ReservedProduct, ProductServiceError>;
    fn release(&self, change: &StockChange) -> Result<Released, ProductServiceError>;
}

/// What a successful reservation tells about the product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedProduct {
    pub name: String,
    /// The product's current price, which becomes the order's unit price.
    pub price_cents: i64,
}

/// The result of a successful release call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The stock went back to the product (now, or by the first call with this key).
    Released,
    /// The product no longer exists (404): there is nothing to give the stock back to.
    ProductGone,
    /// The key's reservation was refused (409): nothing was taken, nothing goes back.
    NothingReserved,
}

/// Why the product service did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductServiceError {
    /// 404: no such product.
    NotFound,
    /// 409: not enough stock to reserve.
    InsufficientStock,
    /// 401: the product service did not accept the caller's token.
    Unauthorized,
    /// A 2xx answer whose body is not a product: the call may have taken effect.
    InvalidAnswer(String),
    /// No answer, or one that cannot be acted upon (422, 5xx, ...); the cause is logged.
    /// Whether the change took effect is unknown.
    Unavailable(String),
}

impl ProductServiceError {
    /// Whether the product service certainly did not apply the change.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ProductServiceError::NotFound
                | ProductServiceError::InsufficientStock
                | ProductServiceError::Unauthorized
        )
    }
}

/// The message broker.
pub trait EventBus {
    /// Publishes and waits for the broker's confirmation; the error is a log message.
    fn publish(&self, event: &OutboxEvent) -> Result<(), String>;
    /// The `traceparent` of the request in progress, kept with each event it writes.
    fn traceparent(&self) -> Option<String>;
}
