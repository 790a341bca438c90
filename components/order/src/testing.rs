//! In-memory fakes of the ports and the fixtures of the service's unit tests.
//!
//! [`world`] wires an [`OrderService`] to a [`FakeStore`] (transactions as copies of the
//! data, committed by swapping them in; [`Faults`] inject failures), [`FakeProducts`]
//! (stock per product, every call recorded) and [`FakeBus`] (a broker that can be down),
//! and keeps handles on each so that a test can arrange faults and inspect the outcome.

use crate::model::{
    Caller, NewOrder, Order, OrderDraft, OrderStatus, OutboxEvent, StockAction, StockChange,
};
use crate::ports::{
    EventBus, ProductService, ProductServiceError, Released, ReservedProduct, Store, StoreError,
    StoreTx,
};
use crate::service::OrderService;
use platform_guest::pagination::Page;
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

// ---- the store --------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Db {
    orders: BTreeMap<i64, Order>,
    outbox: BTreeMap<i64, OutboxEvent>,
    stock_changes: BTreeMap<i64, StockChange>,
    next_order: i64,
    next_event: i64,
    next_stock_change: i64,
    clock: u32,
}

impl Db {
    fn now(&mut self) -> String {
        self.clock += 1;
        format!("2026-11-25T10:00:{:02}.000000Z", self.clock)
    }

    fn insert_stock_change(&mut self, change: &StockChange) -> Result<StockChange, StoreError> {
        if self
            .stock_changes
            .values()
            .any(|row| row.key == change.key && row.action == change.action)
        {
            return Err(StoreError::Internal(
                "unique constraint `stock_changes_key_action_key` violated".into(),
            ));
        }
        self.next_stock_change += 1;
        let stored = StockChange {
            id: self.next_stock_change,
            ..change.clone()
        };
        self.stock_changes.insert(stored.id, stored.clone());
        Ok(stored)
    }
}

#[derive(Default)]
pub struct Faults {
    pub unavailable: Cell<bool>,
    pub fail_insert_event: Cell<bool>,
    /// Commit fails and nothing is applied.
    pub fail_commit: Cell<bool>,
    /// Commit applies, then reports an error.
    pub commit_then_error: Cell<bool>,
}

#[derive(Clone, Default)]
pub struct FakeStore {
    db: Rc<RefCell<Db>>,
    pub faults: Rc<Faults>,
}

pub struct FakeTx {
    db: Rc<RefCell<Db>>,
    work: Db,
    faults: Rc<Faults>,
}

impl FakeStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.faults.unavailable.get() {
            Err(StoreError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        }
    }
    pub fn orders(&self) -> Vec<Order> {
        self.db.borrow().orders.values().cloned().collect()
    }
    pub fn outbox(&self) -> Vec<OutboxEvent> {
        self.db.borrow().outbox.values().cloned().collect()
    }
    pub fn stock_changes(&self) -> Vec<StockChange> {
        self.db.borrow().stock_changes.values().cloned().collect()
    }
}

impl Store for FakeStore {
    type Tx = FakeTx;

    fn begin(&self) -> Result<FakeTx, StoreError> {
        self.check()?;
        Ok(FakeTx {
            db: self.db.clone(),
            work: self.db.borrow().clone(),
            faults: self.faults.clone(),
        })
    }

    fn find_order(&self, id: i64) -> Result<Option<Order>, StoreError> {
        self.check()?;
        Ok(self.db.borrow().orders.get(&id).cloned())
    }

    fn list_orders(&self, user_id: i64, page: Page) -> Result<Vec<Order>, StoreError> {
        self.check()?;
        let mut orders: Vec<Order> = self
            .orders()
            .into_iter()
            .filter(|order| order.user_id == user_id)
            .collect();
        orders.sort_by(|a, b| (&b.created_at, b.id).cmp(&(&a.created_at, a.id)));
        Ok(orders
            .into_iter()
            .skip(page.skip as usize)
            .take(page.limit as usize)
            .collect())
    }

    // The fake has no grace period: every pending row counts as left behind.
    fn stale_event_ids(&self, limit: i64) -> Result<Vec<i64>, StoreError> {
        self.check()?;
        Ok(self
            .db
            .borrow()
            .outbox
            .keys()
            .take(limit as usize)
            .copied()
            .collect())
    }

    fn delete_event(&self, id: i64) -> Result<(), StoreError> {
        self.check()?;
        self.db.borrow_mut().outbox.remove(&id);
        Ok(())
    }

    fn record_stock_change(&self, change: &StockChange) -> Result<StockChange, StoreError> {
        self.check()?;
        self.db.borrow_mut().insert_stock_change(change)
    }

    fn forget_stock_change(&self, id: i64) -> Result<(), StoreError> {
        self.check()?;
        self.db.borrow_mut().stock_changes.remove(&id);
        Ok(())
    }

    // No grace period either: every row counts as unsettled.
    fn unsettled_stock_changes(
        &self,
        _older_than_seconds: i64,
        limit: i64,
    ) -> Result<Vec<StockChange>, StoreError> {
        self.check()?;
        Ok(self
            .stock_changes()
            .into_iter()
            .take(limit as usize)
            .collect())
    }
}

impl StoreTx for FakeTx {
    fn insert_order(&mut self, draft: &OrderDraft) -> Result<Order, StoreError> {
        self.work.next_order += 1;
        let now = self.work.now();
        let order = Order {
            id: self.work.next_order,
            user_id: draft.user_id,
            product_id: draft.product_id,
            product_name: draft.product_name.clone(),
            quantity: draft.quantity,
            unit_price_cents: draft.unit_price_cents,
            total_price_cents: draft.total_price_cents,
            status: draft.status,
            created_at: now.clone(),
            updated_at: now,
            reservation_id: Some(draft.reservation_id.clone()),
        };
        self.work.orders.insert(order.id, order.clone());
        Ok(order)
    }

    fn set_status(&mut self, id: i64, status: OrderStatus) -> Result<Option<Order>, StoreError> {
        let now = self.work.now();
        Ok(match self.work.orders.get_mut(&id) {
            Some(order) if order.status != OrderStatus::Cancelled => {
                order.status = status;
                order.updated_at = now;
                Some(order.clone())
            }
            _ => None,
        })
    }

    fn delete_order(&mut self, id: i64) -> Result<Option<Order>, StoreError> {
        Ok(self.work.orders.remove(&id))
    }

    fn insert_stock_change(&mut self, change: &StockChange) -> Result<StockChange, StoreError> {
        self.work.insert_stock_change(change)
    }

    fn delete_stock_change(&mut self, id: i64) -> Result<(), StoreError> {
        self.work.stock_changes.remove(&id);
        Ok(())
    }

    fn insert_event(&mut self, event: &OutboxEvent) -> Result<i64, StoreError> {
        if self.faults.fail_insert_event.get() {
            return Err(StoreError::Internal("insert into outbox failed".into()));
        }
        self.work.next_event += 1;
        self.work.outbox.insert(self.work.next_event, event.clone());
        Ok(self.work.next_event)
    }

    fn take_event(&mut self, id: i64) -> Result<Option<OutboxEvent>, StoreError> {
        Ok(self.work.outbox.remove(&id))
    }

    fn commit(self) -> Result<(), StoreError> {
        if self.faults.fail_commit.get() {
            return Err(StoreError::Unavailable("connection reset".into()));
        }
        *self.db.borrow_mut() = self.work;
        if self.faults.commit_then_error.get() {
            return Err(StoreError::Unavailable(
                "connection reset after commit".into(),
            ));
        }
        Ok(())
    }

    fn rollback(self) {}
}

// ---- the product service ----------------------------------------------------------------

/// A call the service made to the product service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Reserve(i64, i64),
    Release(i64, i64),
}

#[derive(Default)]
pub struct ProductsInner {
    /// product id -> (name, price in cents, stock)
    pub products: RefCell<HashMap<i64, (String, i64, i64)>>,
    calls: RefCell<Vec<Call>>,
    /// The first answer to each (key, action), as the product service records it.
    reserved: RefCell<HashMap<String, Result<ReservedProduct, ProductServiceError>>>,
    released: RefCell<HashMap<String, Result<Released, ProductServiceError>>>,
    /// Every call fails with this before reaching the product service.
    pub reserve_error: RefCell<Option<ProductServiceError>>,
    pub release_error: RefCell<Option<ProductServiceError>>,
    /// The next reservations land, but their answer is lost (a timeout).
    pub reserve_answers_lost: Cell<usize>,
}

#[derive(Clone, Default)]
pub struct FakeProducts(pub Rc<ProductsInner>);

impl FakeProducts {
    pub fn with(id: i64, name: &str, price_cents: i64, stock: i64) -> Self {
        let fake = FakeProducts::default();
        fake.0
            .products
            .borrow_mut()
            .insert(id, (name.into(), price_cents, stock));
        fake
    }
    pub fn stock(&self, id: i64) -> i64 {
        self.0.products.borrow()[&id].2
    }
    pub fn calls(&self) -> Vec<Call> {
        self.0.calls.borrow().clone()
    }
    pub fn releases(&self) -> usize {
        self.calls()
            .iter()
            .filter(|call| matches!(call, Call::Release(..)))
            .count()
    }

    fn apply_reserve(
        &self,
        id: i64,
        quantity: i64,
    ) -> Result<ReservedProduct, ProductServiceError> {
        let mut products = self.0.products.borrow_mut();
        let (name, price, stock) = products.get_mut(&id).ok_or(ProductServiceError::NotFound)?;
        if *stock < quantity {
            return Err(ProductServiceError::InsufficientStock);
        }
        *stock -= quantity;
        Ok(ReservedProduct {
            name: name.clone(),
            price_cents: *price,
        })
    }
}

/// The product service's keyed semantics: a key is applied once per action and a repeat
/// gets the first answer; the release of a refused reservation gives nothing back.
impl ProductService for FakeProducts {
    fn reserve(&self, change: &StockChange) -> Result<ReservedProduct, ProductServiceError> {
        assert_eq!(change.action, StockAction::Reserve);
        let (id, quantity) = (change.product_id, change.quantity);
        self.0.calls.borrow_mut().push(Call::Reserve(id, quantity));
        if let Some(error) = self.0.reserve_error.borrow().clone() {
            return Err(error);
        }
        let first = self.0.reserved.borrow().get(&change.key).cloned();
        let answer = match first {
            Some(first) => first,
            None => {
                let answer = self.apply_reserve(id, quantity);
                self.0
                    .reserved
                    .borrow_mut()
                    .insert(change.key.clone(), answer.clone());
                answer
            }
        };
        let lost = self.0.reserve_answers_lost.get();
        if lost > 0 {
            self.0.reserve_answers_lost.set(lost - 1);
            return Err(ProductServiceError::Unavailable("timed out".into()));
        }
        answer
    }

    fn release(&self, change: &StockChange) -> Result<Released, ProductServiceError> {
        assert_eq!(change.action, StockAction::Release);
        let (id, quantity) = (change.product_id, change.quantity);
        self.0.calls.borrow_mut().push(Call::Release(id, quantity));
        if let Some(error) = self.0.release_error.borrow().clone() {
            return Err(error);
        }
        if let Some(first) = self.0.released.borrow().get(&change.key) {
            return first.clone();
        }
        let refused = matches!(self.0.reserved.borrow().get(&change.key), Some(Err(_)));
        let answer = if refused {
            Ok(Released::NothingReserved)
        } else {
            match self.0.products.borrow_mut().get_mut(&id) {
                Some((_, _, stock)) => {
                    *stock += quantity;
                    Ok(Released::Released)
                }
                None => Ok(Released::ProductGone),
            }
        };
        self.0
            .released
            .borrow_mut()
            .insert(change.key.clone(), answer.clone());
        answer
    }
}

// ---- the broker -------------------------------------------------------------------------

#[derive(Default)]
pub struct BusInner {
    published: RefCell<Vec<OutboxEvent>>,
    pub down: Cell<bool>,
    /// The `traceparent` of the request in progress.
    pub traceparent: RefCell<Option<String>>,
}

#[derive(Clone, Default)]
pub struct FakeBus(pub Rc<BusInner>);

impl FakeBus {
    pub fn published(&self) -> Vec<OutboxEvent> {
        self.0.published.borrow().clone()
    }
}

impl EventBus for FakeBus {
    fn publish(&self, event: &OutboxEvent) -> Result<(), String> {
        if self.0.down.get() {
            return Err("broker unreachable".into());
        }
        self.0.published.borrow_mut().push(event.clone());
        Ok(())
    }

    fn traceparent(&self) -> Option<String> {
        self.0.traceparent.borrow().clone()
    }
}

// ---- fixtures ---------------------------------------------------------------------------

/// The service under test and handles on its fakes.
pub struct World {
    pub service: OrderService<FakeStore, FakeProducts, FakeBus>,
    pub store: FakeStore,
    pub products: FakeProducts,
    pub bus: FakeBus,
}

/// Product 7 "Widget" at 0.10 with 10 units in stock.
pub fn world() -> World {
    let store = FakeStore::default();
    let products = FakeProducts::with(7, "Widget", 10, 10);
    let bus = FakeBus::default();
    World {
        service: OrderService::new(
            store.clone(),
            products.clone(),
            bus.clone(),
            "order_events".into(),
            Some("Bearer alice-token".into()),
        ),
        store,
        products,
        bus,
    }
}

pub fn alice() -> Caller {
    Caller {
        user_id: 1,
        username: "alice".into(),
    }
}

pub fn bob() -> Caller {
    Caller {
        user_id: 2,
        username: "bob".into(),
    }
}

pub fn three_widgets() -> NewOrder {
    NewOrder {
        product_id: 7,
        quantity: 3,
    }
}

pub fn payload(event: &OutboxEvent) -> Value {
    serde_json::from_str(&event.payload).unwrap()
}
