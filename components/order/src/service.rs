//! The order service's business rules.
//!
//! The service talks to its surroundings only through the ports in `ports.rs`, so that the
//! rules are unit-tested natively with in-memory fakes (`testing.rs`): `Store` / `StoreTx`
//! (the database, `adapters::repository`), `ProductService` (the product service's REST
//! API, `adapters::products`) and `EventBus` (the broker, `adapters::events`).
//!
//! # Stock: exactly once, whatever times out
//! Every call to the product service carries an `Idempotency-Key`, which the product
//! service applies once and answers again with its first answer. An order's reservation is
//! keyed by a fresh reservation id; the release of its stock by the same id (for an order
//! placed before keys, by `order-{id}-release`). And every stock change the service owes
//! is written down as a `stock_changes` row *before* it is made, so that a change whose
//! answer is lost (a timeout, a broken connection, an instance stopped at its deadline) is
//! settled later under the same key, by [`OrderService::settle`] on the service's
//! `maintenance` schedule. A row means:
//!
//! - `reserve` R: a reservation R may exist for an order that is not stored. It is written
//!   (and committed) before the reserve call, and deleted in the very transaction that
//!   stores the order, so it exists exactly as long as no order owns the reservation.
//!   A refused reservation deletes it; any other failure releases R and deletes it, or,
//!   when that fails too, leaves it to be settled: reserve R again (which only replays the
//!   first answer if the first call landed), then release R.
//! - `release` K: the stock of a cancelled or deleted order must go back. It is written in
//!   the transaction that cancels or deletes the order (so a concurrent second cancel
//!   finds the order cancelled and writes none), and deleted once release K succeeded.
//!   The cancel answers 200 even if the release has to wait for the product service.
//!
//! Settling takes only rows older than a grace period longer than any request may run,
//! so it never races the request that wrote them. A row keeps the caller's
//! `authorization` header to settle with; it is deleted once settled (a token that
//! expired meanwhile is refused by the product service, which is logged and keeps the row
//! for an operator).
//!
//! # Events: the transactional outbox
//! An event must go out if and only if the change it describes was committed. Publishing
//! inside the transaction could announce a change that then rolls back; publishing after
//! the commit could lose the event if the broker is down or the instance stops in between.
//! So the event is written as an `outbox` row in the same transaction as the order change:
//! both are committed or neither is. After the commit, [`OrderService::publish_events`]
//! sends the request's own row, then any row a failed publish left behind (older than the
//! repository's grace period, oldest first), and deletes each row once the broker confirmed
//! it. Publishing its own row first, rather than the oldest ones, keeps every request's event
//! prompt under load and keeps concurrent requests off each other's rows. When the broker is
//! unreachable the request still succeeds; the rows stay in the outbox and go out on a later
//! write. Delivery is at-least-once (a row whose delete fails after a confirmed publish is
//! sent again), which is why every event carries a unique `event_id` that consumers
//! deduplicate on.

use crate::log;
use crate::model::{
    new_event, new_reservation_id, total_cents, Caller, EventKind, NewOrder, Order, OrderDraft,
    OrderStatus, OutboxEvent, StockAction, StockChange,
};
use crate::ports::{
    EventBus, ProductService, ProductServiceError, Released, Store, StoreError, StoreTx,
};
use platform_guest::pagination::Page;

/// Rows left behind by failed publishes that one request sends at most.
pub const OUTBOX_BATCH: i64 = 50;

/// Unsettled stock changes one `settle` run takes at most.
pub const STOCK_BATCH: i64 = 50;

/// How long a stock change belongs to the request that wrote it before `settle` takes it
/// (config `settle_after_seconds`): longer than the host lets any request run, so that
/// settling never races the request itself.
pub const DEFAULT_SETTLE_AFTER_SECONDS: i64 = 60;

/// Why an order operation failed; `routes.rs` maps each to its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderError {
    /// 404 `Order not found`.
    NotFound,
    /// 403: the order belongs to another user.
    Forbidden,
    /// 409: a cancelled order cannot change any more.
    AlreadyCancelled,
    /// 400: the product to order does not exist.
    ProductNotFound(i64),
    /// 400: the product has fewer units in stock than ordered.
    InsufficientStock(i64),
    /// 400: unit price x quantity exceeds the largest amount (99 999 999.99).
    TotalTooLarge,
    /// 401: the product service did not accept the caller's token.
    Unauthorized,
    /// 503: the product service is unreachable or answered unexpectedly (cause logged).
    ProductServiceUnavailable(String),
    /// 503: the database is unreachable (cause logged).
    DatabaseUnavailable(String),
    /// 500 (cause logged, never sent).
    Internal(String),
}

impl From<StoreError> for OrderError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => OrderError::DatabaseUnavailable(cause),
            StoreError::Internal(cause) => OrderError::Internal(cause),
        }
    }
}

impl OrderError {
    /// The error for a failed product service call about `product_id`.
    fn from_product(product_id: i64, error: ProductServiceError) -> Self {
        match error {
            ProductServiceError::NotFound => OrderError::ProductNotFound(product_id),
            ProductServiceError::InsufficientStock => OrderError::InsufficientStock(product_id),
            ProductServiceError::Unauthorized => OrderError::Unauthorized,
            ProductServiceError::InvalidAnswer(cause) | ProductServiceError::Unavailable(cause) => {
                OrderError::ProductServiceUnavailable(cause)
            }
        }
    }
}

/// An event a request wrote to the outbox, with its row: the request publishes it itself.
struct OwnEvent {
    row: i64,
    event: OutboxEvent,
}

/// What a use case's commit changes about its order; after a commit error, the order is
/// read again to see whether the change shows.
enum Change<'a> {
    /// A new order is stored.
    Inserted,
    /// The order is stored as `updated` (its status and `updated_at`).
    Updated(&'a Order),
    /// The order is gone.
    Deleted,
}

impl Change<'_> {
    /// Whether `stored`, the order as read again after the commit, shows the change.
    fn shows_in(&self, stored: Option<&Order>) -> bool {
        match self {
            Change::Inserted => stored.is_some(),
            Change::Updated(updated) => stored.is_some_and(|order| {
                order.status == updated.status && order.updated_at == updated.updated_at
            }),
            Change::Deleted => stored.is_none(),
        }
    }
}

/// How a commit ended.
#[derive(Debug, PartialEq, Eq)]
enum Committed {
    Yes,
    /// Certainly not: the transaction's changes, its stock change rows included, are gone.
    No(StoreError),
    /// The commit failed and the check failed too.
    Unknown(StoreError),
}

/// What one `settle` run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Stock changes settled and forgotten.
    pub stock_changes: usize,
    /// Stock changes that stay for a later run.
    pub pending: usize,
    /// Outbox events published.
    pub events: usize,
}

/// The order use cases over the ports.
pub struct OrderService<S, P, B> {
    store: S,
    products: P,
    bus: B,
    /// The exchange events are published to (`events_exchange`).
    exchange: String,
    /// The caller's `authorization` header, sent with the stock changes made for it.
    authorization: Option<String>,
    settle_after_seconds: i64,
}

impl<S: Store, P: ProductService, B: EventBus> OrderService<S, P, B> {
    pub fn new(
        store: S,
        products: P,
        bus: B,
        exchange: String,
        authorization: Option<String>,
    ) -> Self {
        OrderService {
            store,
            products,
            bus,
            exchange,
            authorization,
            settle_after_seconds: DEFAULT_SETTLE_AFTER_SECONDS,
        }
    }

    /// Settles stock changes once they are this old (see [`DEFAULT_SETTLE_AFTER_SECONDS`]).
    pub fn settle_after(mut self, seconds: i64) -> Self {
        self.settle_after_seconds = seconds;
        self
    }

    /// Places an order: writes the reservation down, reserves the stock under its key,
    /// then stores the order with its `order.created` event (forgetting the reservation's
    /// row in the same transaction) and publishes.
    pub fn place_order(&self, caller: &Caller, input: NewOrder) -> Result<Order, OrderError> {
        let reservation = self.store.record_stock_change(&StockChange {
            id: 0,
            key: new_reservation_id(),
            action: StockAction::Reserve,
            product_id: input.product_id,
            quantity: input.quantity,
            authorization: self.authorization.clone(),
        })?;
        let product = match self.products.reserve(&reservation) {
            Ok(product) => product,
            Err(error) if error.is_refusal() => {
                self.forget(&reservation);
                return Err(OrderError::from_product(input.product_id, error));
            }
            Err(error) => {
                // It may or may not have landed: the row stays, and settling finds out.
                log::warn(&format!(
                    "reservation {} of product {}: no usable answer, it is settled later: {error:?}",
                    reservation.key, input.product_id
                ));
                return Err(OrderError::from_product(input.product_id, error));
            }
        };
        let Some(total_price_cents) = total_cents(product.price_cents, input.quantity) else {
            self.undo_reservation(&reservation);
            return Err(OrderError::TotalTooLarge);
        };
        let draft = OrderDraft {
            user_id: caller.user_id,
            product_id: input.product_id,
            product_name: product.name,
            quantity: input.quantity,
            unit_price_cents: product.price_cents,
            total_price_cents,
            status: OrderStatus::Pending,
            reservation_id: reservation.key.clone(),
        };

        let mut tx = match self.store.begin() {
            Ok(tx) => tx,
            Err(error) => {
                self.undo_reservation(&reservation);
                return Err(error.into());
            }
        };
        let stored = self
            .insert_with_event(&mut tx, &draft, caller)
            .and_then(|stored| tx.delete_stock_change(reservation.id).map(|()| stored));
        let (order, event) = match stored {
            Ok(stored) => stored,
            Err(error) => {
                tx.rollback();
                self.undo_reservation(&reservation);
                return Err(error.into());
            }
        };
        match self.commit_checked(tx, order.id, Change::Inserted) {
            Committed::Yes => {}
            Committed::No(error) => {
                self.undo_reservation(&reservation);
                return Err(error.into());
            }
            Committed::Unknown(error) => {
                // The reservation's row tells: it is gone with a stored order, and settling
                // releases it otherwise.
                log::error(&format!(
                    "order {} may or may not be stored ({error:?}); its reservation {} is settled later",
                    order.id, reservation.key
                ));
                return Err(error.into());
            }
        }
        self.publish_events(Some(event));
        Ok(order)
    }

    /// Inserts the order and its `order.created` event; returns the order and the event.
    fn insert_with_event(
        &self,
        tx: &mut S::Tx,
        draft: &OrderDraft,
        caller: &Caller,
    ) -> Result<(Order, OwnEvent), StoreError> {
        let order = tx.insert_order(draft)?;
        let event = new_event(
            EventKind::Created,
            &order,
            &caller.username,
            &self.exchange,
            self.bus.traceparent(),
        );
        let row = tx.insert_event(&event)?;
        Ok((order, OwnEvent { row, event }))
    }

    /// The caller's orders, newest first.
    pub fn list_orders(&self, caller: &Caller, page: Page) -> Result<Vec<Order>, OrderError> {
        Ok(self.store.list_orders(caller.user_id, page)?)
    }

    /// One of the caller's orders: 404 if absent, 403 if another user's.
    pub fn get_order(&self, caller: &Caller, id: i64) -> Result<Order, OrderError> {
        match self.store.find_order(id)? {
            None => Err(OrderError::NotFound),
            Some(order) if order.user_id != caller.user_id => Err(OrderError::Forbidden),
            Some(order) => Ok(order),
        }
    }

    /// Changes an order's status. A cancelled order never changes again (409); cancelling
    /// records `order.cancelled` and the release of the order's stock, which is then made.
    pub fn update_status(
        &self,
        caller: &Caller,
        id: i64,
        status: OrderStatus,
    ) -> Result<Order, OrderError> {
        let current = self.get_order(caller, id)?;
        current
            .status
            .check_change(status)
            .map_err(|_| OrderError::AlreadyCancelled)?;

        let mut tx = self.store.begin()?;
        // The guarded update is what decides: it locks the row, and a concurrent cancel
        // that committed first makes it match nothing.
        let updated = match tx.set_status(id, status) {
            Ok(Some(order)) => order,
            Ok(None) => {
                tx.rollback();
                return Err(self.missing_or_cancelled(id));
            }
            Err(error) => {
                tx.rollback();
                return Err(error.into());
            }
        };
        // The update only matched a row that was not cancelled: this is the one release.
        let mut event_row = None;
        let mut release = None;
        if status == OrderStatus::Cancelled {
            let event = new_event(
                EventKind::Cancelled,
                &updated,
                &caller.username,
                &self.exchange,
                self.bus.traceparent(),
            );
            let written = tx.insert_event(&event).and_then(|row| {
                event_row = Some(OwnEvent { row, event });
                tx.insert_stock_change(&self.release_of(&updated))
            });
            match written {
                Ok(change) => release = Some(change),
                Err(error) => {
                    tx.rollback();
                    return Err(error.into());
                }
            }
        }
        match self.commit_checked(tx, id, Change::Updated(&updated)) {
            Committed::Yes => {}
            Committed::No(error) | Committed::Unknown(error) => return Err(error.into()),
        }
        if let Some(release) = release {
            self.release_now(&release);
        }
        self.publish_events(event_row);
        Ok(updated)
    }

    /// Deletes an order; one that was not cancelled gives its stock back.
    pub fn delete_order(&self, caller: &Caller, id: i64) -> Result<(), OrderError> {
        self.get_order(caller, id)?;
        let mut tx = self.store.begin()?;
        let deleted = match tx.delete_order(id) {
            Ok(Some(order)) => order,
            Ok(None) => {
                tx.rollback();
                return Err(OrderError::NotFound);
            }
            Err(error) => {
                tx.rollback();
                return Err(error.into());
            }
        };
        let mut release = None;
        if deleted.status != OrderStatus::Cancelled {
            match tx.insert_stock_change(&self.release_of(&deleted)) {
                Ok(change) => release = Some(change),
                Err(error) => {
                    tx.rollback();
                    return Err(error.into());
                }
            }
        }
        match self.commit_checked(tx, id, Change::Deleted) {
            Committed::Yes => {}
            Committed::No(error) | Committed::Unknown(error) => return Err(error.into()),
        }
        if let Some(release) = release {
            self.release_now(&release);
        }
        self.publish_events(None);
        Ok(())
    }

    /// Settles what requests left behind: stock changes whose answer was lost, then the
    /// outbox. Run by the `maintenance` schedule.
    pub fn settle(&self) -> Result<Settled, OrderError> {
        let mut settled = Settled::default();
        let unsettled = self
            .store
            .unsettled_stock_changes(self.settle_after_seconds, STOCK_BATCH)?;
        for change in unsettled {
            let done = match change.action {
                StockAction::Reserve => self.settle_reservation(&change),
                StockAction::Release => self.release_now(&change),
            };
            if done {
                settled.stock_changes += 1;
            } else {
                settled.pending += 1;
            }
        }
        settled.events = self.publish_events(None);
        Ok(settled)
    }

    /// A reservation whose order was never stored: reserve again under its key to learn
    /// whether it landed (a repeat only replays the first answer), then release it.
    fn settle_reservation(&self, reservation: &StockChange) -> bool {
        match self.products.reserve(reservation) {
            Ok(_) => self.undo_reservation(reservation),
            Err(error) if error.is_refusal() => {
                log::info(&format!(
                    "reservation {} was refused ({error:?}); nothing to release",
                    reservation.key
                ));
                self.forget(reservation)
            }
            Err(error) => {
                log::warn(&format!(
                    "reservation {} stays unsettled: {error:?}",
                    reservation.key
                ));
                false
            }
        }
    }

    /// Gives a reservation that no order owns back; true once it is settled.
    fn undo_reservation(&self, reservation: &StockChange) -> bool {
        let release = StockChange {
            action: StockAction::Release,
            ..reservation.clone()
        };
        match self.products.release(&release) {
            Ok(_) => {
                log::info(&format!(
                    "released reservation {} ({} unit(s) of product {}) of an order that was not stored",
                    reservation.key, reservation.quantity, reservation.product_id
                ));
                self.forget(reservation)
            }
            Err(error) => {
                log::warn(&format!(
                    "reservation {} of an order that was not stored stays unsettled: {error:?}",
                    reservation.key
                ));
                false
            }
        }
    }

    /// Makes a release and forgets it; true once it is settled.
    fn release_now(&self, release: &StockChange) -> bool {
        match self.products.release(release) {
            Ok(outcome) => {
                if outcome != Released::Released {
                    log::warn(&format!(
                        "release {} of product {}: {outcome:?}; no stock went back",
                        release.key, release.product_id
                    ));
                }
                self.forget(release)
            }
            Err(error) => {
                log::warn(&format!(
                    "release {} of {} unit(s) of product {} is settled later: {error:?}",
                    release.key, release.quantity, release.product_id
                ));
                false
            }
        }
    }

    /// Deletes a settled change's row; true if it is gone (a row left behind is settled
    /// again, which its key makes harmless).
    fn forget(&self, change: &StockChange) -> bool {
        match self.store.forget_stock_change(change.id) {
            Ok(()) => true,
            Err(error) => {
                log::warn(&format!(
                    "stock change {} is settled but its row remains: {error:?}",
                    change.key
                ));
                false
            }
        }
    }

    /// The release of an order's stock, made for the current caller.
    fn release_of(&self, order: &Order) -> StockChange {
        StockChange {
            id: 0,
            key: order.release_key(),
            action: StockAction::Release,
            product_id: order.product_id,
            quantity: order.quantity,
            authorization: self.authorization.clone(),
        }
    }

    /// Publishes the request's own event (if it wrote one), then the rows failed
    /// publishes left behind, oldest first; deletes each once the broker confirmed it and
    /// stops at the first failure (the rest stay for a later write or `settle`). Returns
    /// how many were published. Never fails the request.
    fn publish_events(&self, own: Option<OwnEvent>) -> usize {
        let mut published = 0;
        if let Some(own) = own {
            if self.publish_own(own).is_err() {
                return published;
            }
            published += 1;
        }
        let ids = match self.store.stale_event_ids(OUTBOX_BATCH) {
            Ok(ids) => ids,
            Err(error) => {
                log::warn(&format!("outbox not read, events stay pending: {error:?}"));
                return published;
            }
        };
        for id in ids {
            match self.publish_row(id) {
                Ok(sent) => published += usize::from(sent),
                Err(()) => break,
            }
        }
        published
    }

    /// Publishes the event the request just committed, then deletes its row in one
    /// statement: no other request takes a row within its grace period, so none needs
    /// locking out (the row of a request slower than that may go out twice, and consumers
    /// deduplicate). `Err` (logged) if it stays pending.
    fn publish_own(&self, own: OwnEvent) -> Result<(), ()> {
        let OwnEvent { row, event } = own;
        if let Err(error) = self.bus.publish(&event) {
            log::warn(&format!(
                "event {} ({}) not published, it stays in the outbox: {error}",
                event.event_id, event.routing_key
            ));
            return Err(());
        }
        self.store.delete_event(row).map_err(|error| {
            log::warn(&format!(
                "event {} published but its outbox row remains; it will be sent again: {error:?}",
                event.event_id
            ));
        })
    }

    /// Publishes one row a failed publish left behind and deletes it: `Ok(false)` if
    /// another request took it first, `Err` (logged) if it stays pending.
    fn publish_row(&self, id: i64) -> Result<bool, ()> {
        let mut tx = self.store.begin().map_err(|error| {
            log::warn(&format!(
                "outbox not published, events stay pending: {error:?}"
            ));
        })?;
        // Deleting the row first locks it: a concurrent request publishing the outbox
        // waits, then finds it gone, so a row normally goes out once.
        let event = match tx.take_event(id) {
            Ok(Some(event)) => event,
            Ok(None) => {
                tx.rollback();
                return Ok(false);
            }
            Err(error) => {
                tx.rollback();
                log::warn(&format!(
                    "outbox row {id} not read, it stays pending: {error:?}"
                ));
                return Err(());
            }
        };
        if let Err(error) = self.bus.publish(&event) {
            tx.rollback();
            log::warn(&format!(
                "event {} ({}) not published, it stays in the outbox: {error}",
                event.event_id, event.routing_key
            ));
            return Err(());
        }
        tx.commit().map(|()| true).map_err(|error| {
            log::warn(&format!(
                "event {} published but its outbox row remains; it will be sent again: {error:?}",
                event.event_id
            ));
        })
    }

    /// After a guarded update matched nothing: deleted meanwhile (404) or cancelled (409).
    fn missing_or_cancelled(&self, id: i64) -> OrderError {
        match self.store.find_order(id) {
            Ok(None) => OrderError::NotFound,
            Ok(Some(_)) => OrderError::AlreadyCancelled,
            Err(error) => error.into(),
        }
    }

    /// Commits `tx`; when the commit reports an error, reads order `id` again to tell
    /// whether `change` took effect anyway (the connection can break after the database
    /// committed).
    fn commit_checked(&self, tx: S::Tx, id: i64, change: Change<'_>) -> Committed {
        let Err(error) = tx.commit() else {
            return Committed::Yes;
        };
        match self.store.find_order(id) {
            Ok(stored) if change.shows_in(stored.as_ref()) => {
                log::warn(&format!(
                    "commit of order {id} reported `{error:?}` but it took effect"
                ));
                Committed::Yes
            }
            Ok(_) => Committed::No(error),
            Err(_) => Committed::Unknown(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{alice, bob, payload, three_widgets, world, Call};
    use serde_json::Value;

    // ---- placing orders --------------------------------------------------------------

    #[test]
    fn placing_an_order_reserves_stores_and_publishes() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        assert_eq!(order.status, OrderStatus::Pending);
        assert_eq!(order.user_id, 1);
        assert_eq!(order.product_name, "Widget");
        assert_eq!(order.unit_price_cents, 10);
        assert_eq!(order.total_price_cents, 30);
        assert_eq!(order.to_json()["total_price"].to_string(), "0.3");
        assert_eq!(w.products.stock(7), 7);
        assert_eq!(w.products.calls(), vec![Call::Reserve(7, 3)]);
        assert_eq!(w.store.orders(), vec![order.clone()]);

        let published = w.bus.published();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].routing_key, "order.created");
        assert_eq!(published[0].exchange, "order_events");
        let body = payload(&published[0]);
        assert_eq!(body["event_id"], published[0].event_id.as_str());
        assert_eq!(body["data"]["order_id"], order.id);
        assert_eq!(body["data"]["username"], "alice");
        assert_eq!(body["data"]["total_price"].to_string(), "0.3");
        assert!(w.store.outbox().is_empty(), "published rows are deleted");
    }

    #[test]
    fn product_answers_become_order_errors_without_storing() {
        let w = world();
        let unknown = NewOrder {
            product_id: 99,
            quantity: 1,
        };
        assert_eq!(
            w.service.place_order(&alice(), unknown),
            Err(OrderError::ProductNotFound(99))
        );
        let too_many = NewOrder {
            product_id: 7,
            quantity: 11,
        };
        assert_eq!(
            w.service.place_order(&alice(), too_many),
            Err(OrderError::InsufficientStock(7))
        );
        *w.products.0.reserve_error.borrow_mut() = Some(ProductServiceError::Unauthorized);
        assert_eq!(
            w.service.place_order(&alice(), three_widgets()),
            Err(OrderError::Unauthorized)
        );
        *w.products.0.reserve_error.borrow_mut() =
            Some(ProductServiceError::Unavailable("timeout".into()));
        assert!(matches!(
            w.service.place_order(&alice(), three_widgets()),
            Err(OrderError::ProductServiceUnavailable(_))
        ));
        assert!(w.store.orders().is_empty());
        assert!(w.store.outbox().is_empty());
        assert!(w.bus.published().is_empty());
        assert_eq!(w.products.releases(), 0, "nothing was reserved");
        assert_eq!(w.products.stock(7), 10);
    }

    #[test]
    fn a_reservation_without_a_usable_answer_is_settled_later() {
        let w = world();
        *w.products.0.reserve_error.borrow_mut() =
            Some(ProductServiceError::InvalidAnswer("not JSON".into()));
        assert!(matches!(
            w.service.place_order(&alice(), three_widgets()),
            Err(OrderError::ProductServiceUnavailable(_))
        ));
        let pending = w.store.stock_changes();
        assert_eq!(pending.len(), 1, "the reservation stays written down");
        assert_eq!(pending[0].action, StockAction::Reserve);
        assert_eq!(
            pending[0].authorization.as_deref(),
            Some("Bearer alice-token")
        );

        *w.products.0.reserve_error.borrow_mut() = None;
        let settled = w.service.settle().unwrap();
        assert_eq!((settled.stock_changes, settled.pending), (1, 0));
        assert_eq!(w.products.stock(7), 10);
        assert!(w.store.stock_changes().is_empty());
        assert!(w.store.orders().is_empty());
    }

    #[test]
    fn a_reservation_that_landed_but_timed_out_is_given_back_exactly_once() {
        let w = world();
        w.products.0.reserve_answers_lost.set(1);
        assert!(matches!(
            w.service.place_order(&alice(), three_widgets()),
            Err(OrderError::ProductServiceUnavailable(_))
        ));
        assert_eq!(w.products.stock(7), 7, "the reservation landed");
        assert!(w.store.orders().is_empty(), "no order owns it");

        // The product service is unreachable for the first settle: the row stays.
        *w.products.0.reserve_error.borrow_mut() = Some(ProductServiceError::Unavailable(
            "connection refused".into(),
        ));
        assert_eq!(w.service.settle().unwrap().pending, 1);
        *w.products.0.reserve_error.borrow_mut() = None;
        assert_eq!(w.service.settle().unwrap().stock_changes, 1);
        assert_eq!(w.service.settle().unwrap(), Settled::default());
        assert_eq!(w.products.stock(7), 10);
    }

    #[test]
    fn a_reservation_that_never_landed_takes_nothing_when_settled() {
        let w = world();
        *w.products.0.reserve_error.borrow_mut() =
            Some(ProductServiceError::Unavailable("timed out".into()));
        assert!(w.service.place_order(&alice(), three_widgets()).is_err());
        *w.products.0.reserve_error.borrow_mut() = None;
        w.service.settle().unwrap();
        assert_eq!(w.products.stock(7), 10);
        assert!(w.store.stock_changes().is_empty());
        // A refused reservation is simply forgotten.
        w.products.0.products.borrow_mut().get_mut(&7).unwrap().2 = 1;
        assert_eq!(
            w.service.place_order(&alice(), three_widgets()),
            Err(OrderError::InsufficientStock(7))
        );
        assert!(w.store.stock_changes().is_empty());
        assert_eq!(w.products.stock(7), 1);
    }

    #[test]
    fn a_total_beyond_the_maximum_is_refused_and_released() {
        let w = world();
        w.products
            .0
            .products
            .borrow_mut()
            .insert(8, ("Gold".into(), platform_guest::money::MAX_CENTS, 5));
        let order = NewOrder {
            product_id: 8,
            quantity: 2,
        };
        assert_eq!(
            w.service.place_order(&alice(), order),
            Err(OrderError::TotalTooLarge)
        );
        assert_eq!(w.products.stock(8), 5);
        assert!(w.store.orders().is_empty());
    }

    #[test]
    fn a_failed_store_releases_the_reservation() {
        let w = world();
        w.store.faults.fail_insert_event.set(true);
        assert!(matches!(
            w.service.place_order(&alice(), three_widgets()),
            Err(OrderError::Internal(_))
        ));
        assert_eq!(w.products.stock(7), 10);
        assert!(
            w.store.orders().is_empty(),
            "order and event roll back together"
        );
        w.store.faults.fail_insert_event.set(false);

        w.store.faults.fail_commit.set(true);
        assert!(matches!(
            w.service.place_order(&alice(), three_widgets()),
            Err(OrderError::DatabaseUnavailable(_))
        ));
        assert_eq!(w.products.stock(7), 10);
        assert!(w.store.orders().is_empty());
        w.store.faults.fail_commit.set(false);

        w.store.faults.unavailable.set(true);
        assert!(matches!(
            w.service.place_order(&alice(), three_widgets()),
            Err(OrderError::DatabaseUnavailable(_))
        ));
        assert_eq!(w.products.stock(7), 10);
        assert!(w.bus.published().is_empty());
    }

    #[test]
    fn a_commit_error_that_took_effect_is_a_success() {
        let w = world();
        w.store.faults.commit_then_error.set(true);
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        assert_eq!(w.store.orders(), vec![order]);
        assert_eq!(w.products.stock(7), 3 + 4);
        assert_eq!(w.products.releases(), 0);
    }

    #[test]
    fn an_event_left_behind_keeps_the_trace_of_the_request_that_wrote_it() {
        let w = world();
        let first_request = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let later_request = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        *w.bus.0.traceparent.borrow_mut() = Some(first_request.into());
        w.bus.0.down.set(true);
        let left_behind = w.service.place_order(&alice(), three_widgets()).unwrap();
        w.bus.0.down.set(false);
        *w.bus.0.traceparent.borrow_mut() = Some(later_request.into());
        let placed = w.service.place_order(&alice(), three_widgets()).unwrap();
        let traces: Vec<(Value, Option<String>)> = w
            .bus
            .published()
            .iter()
            .map(|event| {
                (
                    payload(event)["data"]["order_id"].clone(),
                    event.traceparent.clone(),
                )
            })
            .collect();
        assert_eq!(
            traces,
            vec![
                (Value::from(placed.id), Some(later_request.into())),
                (Value::from(left_behind.id), Some(first_request.into())),
            ]
        );
    }

    #[test]
    fn events_wait_in_the_outbox_while_the_broker_is_down() {
        let w = world();
        w.bus.0.down.set(true);
        let first = w.service.place_order(&alice(), three_widgets()).unwrap();
        let second = w.service.place_order(&bob(), three_widgets()).unwrap();
        assert!(w.bus.published().is_empty());
        assert_eq!(w.store.outbox().len(), 2);

        w.bus.0.down.set(false);
        let third = w.service.place_order(&alice(), three_widgets()).unwrap();
        let order_ids: Vec<Value> = w
            .bus
            .published()
            .iter()
            .map(|event| payload(event)["data"]["order_id"].clone())
            .collect();
        assert_eq!(
            order_ids,
            vec![
                Value::from(third.id),
                Value::from(first.id),
                Value::from(second.id)
            ],
            "the request's own event first, then the ones left behind, oldest first"
        );
        assert!(w.store.outbox().is_empty());
        assert_eq!(w.service.publish_events(None), 0);
    }

    #[test]
    fn publishing_stops_at_the_first_failure() {
        let w = world();
        w.bus.0.down.set(true);
        w.service.place_order(&alice(), three_widgets()).unwrap();
        w.service.place_order(&alice(), three_widgets()).unwrap();
        assert_eq!(w.service.publish_events(None), 0);
        assert_eq!(w.store.outbox().len(), 2);
        w.bus.0.down.set(false);
        assert_eq!(w.service.publish_events(None), 2);
        assert!(w.store.outbox().is_empty());
    }

    #[test]
    fn a_backlog_never_holds_back_a_new_event() {
        let w = world();
        w.bus.0.down.set(true);
        for _ in 0..(OUTBOX_BATCH + 5) {
            w.products.0.products.borrow_mut().get_mut(&7).unwrap().2 += 3;
            w.service.place_order(&alice(), three_widgets()).unwrap();
        }
        w.bus.0.down.set(false);
        w.products.0.products.borrow_mut().get_mut(&7).unwrap().2 += 3;
        let newest = w.service.place_order(&bob(), three_widgets()).unwrap();
        let first = payload(&w.bus.published()[0]);
        assert_eq!(first["data"]["order_id"], Value::from(newest.id));
        assert_eq!(w.bus.published().len() as i64, 1 + OUTBOX_BATCH);
    }

    // ---- reading ---------------------------------------------------------------------

    #[test]
    fn orders_are_private_to_their_owner() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        assert_eq!(w.service.get_order(&alice(), order.id), Ok(order.clone()));
        assert_eq!(
            w.service.get_order(&bob(), order.id),
            Err(OrderError::Forbidden)
        );
        assert_eq!(
            w.service.get_order(&alice(), 404),
            Err(OrderError::NotFound)
        );
        let page = Page {
            skip: 0,
            limit: 100,
        };
        assert_eq!(w.service.list_orders(&alice(), page), Ok(vec![order]));
        assert_eq!(w.service.list_orders(&bob(), page), Ok(vec![]));
    }

    // ---- status changes ---------------------------------------------------------------

    #[test]
    fn cancelling_releases_the_stock_exactly_once() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        let cancelled = w
            .service
            .update_status(&alice(), order.id, OrderStatus::Cancelled)
            .unwrap();
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert_eq!(w.products.stock(7), 10);
        assert_eq!(w.products.releases(), 1);

        let events = w.bus.published();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].routing_key, "order.cancelled");
        assert_eq!(payload(&events[1])["data"]["status"], "cancelled");
        assert_eq!(payload(&events[1])["data"]["order_id"], order.id);
        assert_ne!(events[0].event_id, events[1].event_id);

        for status in OrderStatus::ALL {
            assert_eq!(
                w.service.update_status(&alice(), order.id, status),
                Err(OrderError::AlreadyCancelled)
            );
        }
        assert!(matches!(w.service.delete_order(&alice(), order.id), Ok(())));
        assert_eq!(
            w.products.releases(),
            1,
            "deleting a cancelled order releases nothing"
        );
        assert_eq!(w.products.stock(7), 10);
    }

    #[test]
    fn other_status_changes_neither_release_nor_publish() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        for status in [
            OrderStatus::Confirmed,
            OrderStatus::Shipped,
            OrderStatus::Delivered,
            OrderStatus::Pending,
        ] {
            let updated = w.service.update_status(&alice(), order.id, status).unwrap();
            assert_eq!(updated.status, status);
            assert_eq!(w.store.orders()[0].status, status);
        }
        assert_eq!(w.products.releases(), 0);
        assert_eq!(w.bus.published().len(), 1, "only order.created");
        assert_eq!(
            w.service
                .update_status(&bob(), order.id, OrderStatus::Shipped),
            Err(OrderError::Forbidden)
        );
        assert_eq!(
            w.service.update_status(&alice(), 77, OrderStatus::Shipped),
            Err(OrderError::NotFound)
        );
    }

    #[test]
    fn a_cancel_whose_release_fails_is_settled_later() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        *w.products.0.release_error.borrow_mut() = Some(ProductServiceError::Unavailable(
            "connection refused".into(),
        ));
        let cancelled = w
            .service
            .update_status(&alice(), order.id, OrderStatus::Cancelled)
            .unwrap();
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert_eq!(w.products.stock(7), 7, "the release waits");
        let pending = w.store.stock_changes();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].key, order.reservation_id.clone().unwrap());
        assert_eq!(
            w.service
                .update_status(&alice(), order.id, OrderStatus::Cancelled),
            Err(OrderError::AlreadyCancelled),
            "a second cancel writes no second release"
        );

        *w.products.0.release_error.borrow_mut() = None;
        assert_eq!(w.service.settle().unwrap().stock_changes, 1);
        w.service.settle().unwrap();
        assert_eq!(w.products.stock(7), 10);
    }

    #[test]
    fn cancelling_an_order_of_a_deleted_product_succeeds() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        w.products.0.products.borrow_mut().clear();
        let cancelled = w
            .service
            .update_status(&alice(), order.id, OrderStatus::Cancelled)
            .unwrap();
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
    }

    #[test]
    fn a_cancel_that_cannot_be_committed_releases_nothing() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        w.store.faults.fail_commit.set(true);
        assert!(matches!(
            w.service
                .update_status(&alice(), order.id, OrderStatus::Cancelled),
            Err(OrderError::DatabaseUnavailable(_))
        ));
        assert_eq!(w.store.orders()[0].status, OrderStatus::Pending);
        assert_eq!(w.products.stock(7), 7);
        assert_eq!(w.products.releases(), 0);

        w.store.faults.fail_commit.set(false);
        w.store.faults.fail_insert_event.set(true);
        assert!(matches!(
            w.service
                .update_status(&alice(), order.id, OrderStatus::Cancelled),
            Err(OrderError::Internal(_))
        ));
        assert_eq!(w.store.orders()[0].status, OrderStatus::Pending);
        assert!(w.store.stock_changes().is_empty());
        assert_eq!(w.products.stock(7), 7);
    }

    #[test]
    fn a_cancel_whose_commit_took_effect_is_not_compensated() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        w.store.faults.commit_then_error.set(true);
        let cancelled = w
            .service
            .update_status(&alice(), order.id, OrderStatus::Cancelled)
            .unwrap();
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert_eq!(w.products.stock(7), 10);
        assert_eq!(w.products.releases(), 1);
    }

    // ---- deleting ---------------------------------------------------------------------

    #[test]
    fn deleting_an_active_order_releases_its_stock() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        assert_eq!(
            w.service.delete_order(&bob(), order.id),
            Err(OrderError::Forbidden)
        );
        assert_eq!(
            w.service.delete_order(&alice(), 404),
            Err(OrderError::NotFound)
        );
        assert_eq!(w.service.delete_order(&alice(), order.id), Ok(()));
        assert!(w.store.orders().is_empty());
        assert_eq!(w.products.stock(7), 10);
        assert_eq!(w.products.releases(), 1);
        assert_eq!(
            w.service.delete_order(&alice(), order.id),
            Err(OrderError::NotFound)
        );
        assert_eq!(w.products.releases(), 1);
    }

    #[test]
    fn a_delete_whose_release_fails_is_settled_later() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        *w.products.0.release_error.borrow_mut() =
            Some(ProductServiceError::Unavailable("503".into()));
        assert_eq!(w.service.delete_order(&alice(), order.id), Ok(()));
        assert!(w.store.orders().is_empty());
        assert_eq!(w.products.stock(7), 7);
        *w.products.0.release_error.borrow_mut() = None;
        w.service.settle().unwrap();
        w.service.settle().unwrap();
        assert_eq!(w.products.stock(7), 10);
    }

    #[test]
    fn a_delete_that_cannot_be_committed_releases_nothing() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        w.store.faults.fail_commit.set(true);
        assert!(matches!(
            w.service.delete_order(&alice(), order.id),
            Err(OrderError::DatabaseUnavailable(_))
        ));
        assert_eq!(w.store.orders(), vec![order]);
        assert_eq!(w.products.stock(7), 7);
        assert_eq!(w.products.releases(), 0);
    }

    #[test]
    fn an_order_placed_before_keys_is_released_under_a_key_of_its_own() {
        let w = world();
        let mut order = w.service.place_order(&alice(), three_widgets()).unwrap();
        order.reservation_id = None;
        assert_eq!(order.release_key(), format!("order-{}-release", order.id));
    }

    #[test]
    fn settling_publishes_what_the_broker_refused() {
        let w = world();
        w.bus.0.down.set(true);
        w.service.place_order(&alice(), three_widgets()).unwrap();
        assert!(w.bus.published().is_empty());
        w.bus.0.down.set(false);
        assert_eq!(w.service.settle().unwrap().events, 1);
        assert_eq!(w.bus.published().len(), 1);
        assert!(w.store.outbox().is_empty());
    }
}
