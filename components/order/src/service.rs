//! The order service's business rules.
//!
//! The service talks to its surroundings only through the ports in `ports.rs`, so that the
//! rules are unit-tested natively with in-memory fakes (`testing.rs`): `Store` / `StoreTx`
//! (the database, `adapters::repository`), `ProductService` (the product service's REST
//! API, `adapters::products`) and `EventBus` (the broker, `adapters::events`).
//!
//! # Stock
//! Placing an order reserves its stock at the product service first (the product service
//! makes reservations atomic); when the order cannot be stored afterwards the reservation
//! is released again. Cancelling an order, or deleting one that is not cancelled, gives the
//! stock back exactly once: the status change (`... WHERE status <> 'cancelled'`) or the
//! delete locks the order's row inside a transaction, the release call happens while the
//! lock is held, and the transaction only commits once the release succeeded. A
//! concurrent cancel or delete waits on the row lock and then finds the order cancelled or
//! gone, so it never releases a second time; a failed release rolls the change back.
//! A commit that reports an error is checked and, if it did not take effect, the product
//! service call is taken back (`OrderService::commit_or_compensate`).
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
    new_event, total_cents, Caller, EventKind, NewOrder, Order, OrderDraft, OrderStatus,
};
use crate::ports::{
    EventBus, ProductService, ProductServiceError, Released, Store, StoreError, StoreTx,
};
use platform_guest::pagination::Page;

/// Rows left behind by failed publishes that one request sends at most.
pub const OUTBOX_BATCH: i64 = 50;

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

/// The product service call a use case made inside its transaction (a reservation, or a
/// release), and how to take it back when the commit fails.
struct Compensation<U, L> {
    /// Takes the call back; run only when the change certainly was not committed.
    undo: U,
    /// Logs what stays wrong when it is unknown whether the commit took effect, so that
    /// nothing is taken back; given the commit's error and the check's.
    log_unknown: L,
}

/// The order use cases over the ports.
pub struct OrderService<S, P, B> {
    store: S,
    products: P,
    bus: B,
    /// The exchange events are published to (`events_exchange`).
    exchange: String,
}

impl<S: Store, P: ProductService, B: EventBus> OrderService<S, P, B> {
    pub fn new(store: S, products: P, bus: B, exchange: String) -> Self {
        OrderService {
            store,
            products,
            bus,
            exchange,
        }
    }

    /// Places an order: reserves the stock, stores the order and its `order.created`
    /// event in one transaction (releasing the reservation if that fails), then publishes.
    pub fn place_order(&self, caller: &Caller, input: NewOrder) -> Result<Order, OrderError> {
        let product = match self.products.reserve(input.product_id, input.quantity) {
            Ok(product) => product,
            Err(error) => {
                if let ProductServiceError::InvalidAnswer(cause) = &error {
                    // A 2xx answer: the stock was probably reserved; give it back.
                    log::error(&format!(
                        "product {} answered a reservation unexpectedly: {cause}",
                        input.product_id
                    ));
                    self.release_after_failure(input.product_id, input.quantity);
                }
                return Err(OrderError::from_product(input.product_id, error));
            }
        };
        let Some(total_price_cents) = total_cents(product.price_cents, input.quantity) else {
            self.release_after_failure(input.product_id, input.quantity);
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
        };

        let mut tx = match self.store.begin() {
            Ok(tx) => tx,
            Err(error) => {
                self.release_after_failure(input.product_id, input.quantity);
                return Err(error.into());
            }
        };
        let (order, event) = match self.insert_with_event(&mut tx, &draft, caller) {
            Ok(inserted) => inserted,
            Err(error) => {
                tx.rollback();
                self.release_after_failure(input.product_id, input.quantity);
                return Err(error.into());
            }
        };
        self.commit_or_compensate(
            tx,
            order.id,
            Change::Inserted,
            Some(Compensation {
                undo: || self.release_after_failure(input.product_id, input.quantity),
                log_unknown: |error: &StoreError, check: &StoreError| {
                    // Releasing could oversell if the order was stored after all; keeping
                    // the reservation at worst holds back stock, which an operator can fix.
                    log::error(&format!(
                        "order {} may or may not be stored (commit: {error:?}, check: {check:?}); \
                         {} unit(s) of product {} stay reserved",
                        order.id, input.quantity, input.product_id
                    ));
                },
            }),
        )?;
        self.publish_events(Some(event));
        Ok(order)
    }

    /// Inserts the order and its `order.created` event; returns both ids' owners.
    fn insert_with_event(
        &self,
        tx: &mut S::Tx,
        draft: &OrderDraft,
        caller: &Caller,
    ) -> Result<(Order, i64), StoreError> {
        let order = tx.insert_order(draft)?;
        let event = tx.insert_event(&new_event(
            EventKind::Created,
            &order,
            &caller.username,
            &self.exchange,
        ))?;
        Ok((order, event))
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
    /// releases the stock exactly once and records `order.cancelled`.
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
        let cancelling = status == OrderStatus::Cancelled;
        let mut event_row = None;
        if cancelling {
            if let Err(error) = self.release_stock(&updated) {
                tx.rollback();
                return Err(error);
            }
            let event = new_event(
                EventKind::Cancelled,
                &updated,
                &caller.username,
                &self.exchange,
            );
            match tx.insert_event(&event) {
                Ok(row) => event_row = Some(row),
                Err(error) => {
                    tx.rollback();
                    self.reserve_again(&updated);
                    return Err(error.into());
                }
            }
        }
        self.commit_or_compensate(
            tx,
            id,
            Change::Updated(&updated),
            cancelling.then_some(Compensation {
                undo: || self.reserve_again(&updated),
                log_unknown: |error: &StoreError, check: &StoreError| {
                    log::error(&format!(
                        "cancellation of order {id} may not be stored (commit: {error:?}, \
                         check: {check:?}) although its stock was released"
                    ));
                },
            }),
        )?;
        self.publish_events(event_row);
        Ok(updated)
    }

    /// Deletes an order; one that was not cancelled gives its stock back first.
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
        let releasing = deleted.status != OrderStatus::Cancelled;
        if releasing {
            if let Err(error) = self.release_stock(&deleted) {
                tx.rollback();
                return Err(error);
            }
        }
        self.commit_or_compensate(
            tx,
            id,
            Change::Deleted,
            releasing.then_some(Compensation {
                undo: || self.reserve_again(&deleted),
                log_unknown: |error: &StoreError, check: &StoreError| {
                    log::error(&format!(
                        "deletion of order {id} may not be stored (commit: {error:?}, \
                         check: {check:?}) although its stock was released"
                    ));
                },
            }),
        )?;
        self.publish_events(None);
        Ok(())
    }

    /// Publishes the request's own outbox row (if it wrote one), then the rows failed
    /// publishes left behind, oldest first; deletes each once the broker confirmed it and
    /// stops at the first failure (the rest stay for a later write). Returns how many were
    /// published. Never fails the request.
    pub fn publish_events(&self, own: Option<i64>) -> usize {
        let mut published = 0;
        if let Some(own) = own {
            match self.publish_row(own) {
                Ok(sent) => published += usize::from(sent),
                Err(()) => return published,
            }
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

    /// Publishes one outbox row and deletes it: `Ok(false)` if another request took it
    /// first, `Err` (logged) if it stays pending.
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

    /// Gives an order's stock back; a product that no longer exists has nothing to take it.
    fn release_stock(&self, order: &Order) -> Result<(), OrderError> {
        match self.products.release(order.product_id, order.quantity) {
            Ok(Released::Released) => Ok(()),
            Ok(Released::ProductGone) => {
                log::warn(&format!(
                    "product {} of order {} no longer exists; no stock to release",
                    order.product_id, order.id
                ));
                Ok(())
            }
            Err(error) => Err(OrderError::from_product(order.product_id, error)),
        }
    }

    /// Compensation when an order could not be stored after its stock was reserved.
    fn release_after_failure(&self, product_id: i64, quantity: i64) {
        match self.products.release(product_id, quantity) {
            Ok(_) => log::info(&format!(
                "released {quantity} unit(s) of product {product_id} after a failed order"
            )),
            Err(error) => log::error(&format!(
                "{quantity} unit(s) of product {product_id} stay reserved for an order that was \
                 not stored: release failed: {error:?}"
            )),
        }
    }

    /// Compensation when a cancel or delete released stock but could not be committed.
    fn reserve_again(&self, order: &Order) {
        match self.products.reserve(order.product_id, order.quantity) {
            Ok(_) => log::warn(&format!(
                "order {} unchanged after a failed commit; its stock was reserved again",
                order.id
            )),
            Err(error) => log::error(&format!(
                "order {} unchanged after a failed commit but its {} unit(s) of product {} \
                 could not be reserved again: {error:?}",
                order.id, order.quantity, order.product_id
            )),
        }
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
    ///
    /// - It did: the error is logged and the use case goes on as committed.
    /// - It did not: `compensation` takes back the product service call made inside the
    ///   transaction, and the commit's error is returned.
    /// - Unknown (the check failed too): nothing is taken back, since taking back a call
    ///   whose change was committed would be wrong in the other direction; what stays wrong
    ///   is logged and the commit's error is returned.
    fn commit_or_compensate(
        &self,
        tx: S::Tx,
        id: i64,
        change: Change<'_>,
        compensation: Option<Compensation<impl FnOnce(), impl FnOnce(&StoreError, &StoreError)>>,
    ) -> Result<(), OrderError> {
        let Err(error) = tx.commit() else {
            return Ok(());
        };
        match self.store.find_order(id) {
            Ok(stored) if change.shows_in(stored.as_ref()) => {
                let (what, state) = match change {
                    Change::Deleted => ("deleting order", "gone"),
                    Change::Inserted | Change::Updated(_) => ("order", "stored"),
                };
                log::warn(&format!(
                    "commit of {what} {id} reported `{error:?}` but it is {state}"
                ));
                Ok(())
            }
            Ok(_) => {
                if let Some(compensation) = compensation {
                    (compensation.undo)();
                }
                Err(error.into())
            }
            Err(check) => {
                if let Some(compensation) = compensation {
                    (compensation.log_unknown)(&error, &check);
                }
                Err(error.into())
            }
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
    fn an_unreadable_reservation_answer_is_released() {
        let w = world();
        *w.products.0.reserve_error.borrow_mut() =
            Some(ProductServiceError::InvalidAnswer("not JSON".into()));
        assert!(matches!(
            w.service.place_order(&alice(), three_widgets()),
            Err(OrderError::ProductServiceUnavailable(_))
        ));
        assert_eq!(
            w.products.calls(),
            vec![Call::Reserve(7, 3), Call::Release(7, 3)]
        );
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
    fn a_failed_release_keeps_the_order_as_it_was() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        *w.products.0.release_error.borrow_mut() = Some(ProductServiceError::Unavailable(
            "connection refused".into(),
        ));
        assert!(matches!(
            w.service
                .update_status(&alice(), order.id, OrderStatus::Cancelled),
            Err(OrderError::ProductServiceUnavailable(_))
        ));
        assert_eq!(w.store.orders()[0].status, OrderStatus::Pending);
        assert!(w.store.outbox().is_empty());
        assert_eq!(w.bus.published().len(), 1);

        *w.products.0.release_error.borrow_mut() = Some(ProductServiceError::Unauthorized);
        assert_eq!(
            w.service
                .update_status(&alice(), order.id, OrderStatus::Cancelled),
            Err(OrderError::Unauthorized)
        );

        *w.products.0.release_error.borrow_mut() = None;
        w.service
            .update_status(&alice(), order.id, OrderStatus::Cancelled)
            .unwrap();
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
    fn a_cancel_that_cannot_be_committed_reserves_the_stock_again() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        w.store.faults.fail_commit.set(true);
        assert!(matches!(
            w.service
                .update_status(&alice(), order.id, OrderStatus::Cancelled),
            Err(OrderError::DatabaseUnavailable(_))
        ));
        assert_eq!(w.store.orders()[0].status, OrderStatus::Pending);
        assert_eq!(w.products.stock(7), 7, "released then reserved again");
        assert_eq!(
            w.products.calls(),
            vec![
                Call::Reserve(7, 3),
                Call::Release(7, 3),
                Call::Reserve(7, 3)
            ]
        );

        w.store.faults.fail_commit.set(false);
        w.store.faults.fail_insert_event.set(true);
        assert!(matches!(
            w.service
                .update_status(&alice(), order.id, OrderStatus::Cancelled),
            Err(OrderError::Internal(_))
        ));
        assert_eq!(w.store.orders()[0].status, OrderStatus::Pending);
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
    fn a_delete_whose_release_fails_keeps_the_order() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        *w.products.0.release_error.borrow_mut() =
            Some(ProductServiceError::Unavailable("503".into()));
        assert!(matches!(
            w.service.delete_order(&alice(), order.id),
            Err(OrderError::ProductServiceUnavailable(_))
        ));
        assert_eq!(w.store.orders(), vec![order]);
        assert_eq!(w.products.stock(7), 7);
    }

    #[test]
    fn a_delete_that_cannot_be_committed_reserves_the_stock_again() {
        let w = world();
        let order = w.service.place_order(&alice(), three_widgets()).unwrap();
        w.store.faults.fail_commit.set(true);
        assert!(matches!(
            w.service.delete_order(&alice(), order.id),
            Err(OrderError::DatabaseUnavailable(_))
        ));
        assert_eq!(w.store.orders(), vec![order]);
        assert_eq!(w.products.stock(7), 7);
    }
}
