//! Business rules of the product service: cache-aside reads, invalidation on every write,
//! atomic stock reservation. Storage and cache sit behind small traits so the rules are
//! unit-tested natively with in-memory fakes.

use crate::model::{
    cache_key, KeyedChange, NewProduct, Product, ProductJson, ProductUpdate, StockAnswer,
    StockOperation,
};
use platform_guest::pagination::Page;
use std::fmt;

/// How often reserve / release retry their conditional UPDATE when the follow-up SELECT
/// shows that a concurrent call changed the stock in between.
const STOCK_ATTEMPTS: usize = 3;

pub use platform_guest::db::StoreError;

/// What a product operation can fail with; routes map each to a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductError {
    /// 404 `Product not found`.
    NotFound,
    /// 409: a reservation larger than the stock.
    InsufficientStock {
        product_id: i64,
        requested: i64,
        available: i64,
    },
    /// 409: a release that would push the stock past the largest storable quantity.
    StockOverflow {
        product_id: i64,
        requested: i64,
        available: i64,
    },
    /// 503 or 500.
    Store(StoreError),
}

impl From<StoreError> for ProductError {
    fn from(error: StoreError) -> Self {
        ProductError::Store(error)
    }
}

impl ProductError {
    /// The HTTP status of the error.
    pub fn status(&self) -> u16 {
        match self {
            ProductError::NotFound => 404,
            ProductError::InsufficientStock { .. } | ProductError::StockOverflow { .. } => 409,
            ProductError::Store(StoreError::Unavailable(_)) => 503,
            ProductError::Store(StoreError::Internal(_)) => 500,
        }
    }
}

/// The `detail` message clients see (store errors never show their cause).
impl fmt::Display for ProductError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProductError::NotFound => f.write_str("Product not found"),
            ProductError::InsufficientStock {
                product_id,
                requested,
                available,
            } => write!(
                f,
                "Not enough stock for product {product_id}: requested {requested}, available {available}"
            ),
            ProductError::StockOverflow {
                product_id,
                requested,
                available,
            } => write!(
                f,
                "Cannot release {requested} units of product {product_id}: stock {available} would exceed the maximum of {}",
                i64::MAX
            ),
            ProductError::Store(StoreError::Unavailable(_)) => f.write_str("Database unavailable"),
            ProductError::Store(StoreError::Internal(_)) => f.write_str("Internal Server Error"),
        }
    }
}

/// The statements that change stock, run on their own or inside a [`KeyedTx`].
pub trait StockStatements {
    /// Atomically takes `quantity` units if at least that many are in stock; `None` if the
    /// product is unknown or short of stock.
    fn take_stock(&self, id: i64, quantity: i64) -> Result<Option<Product>, StoreError>;
    /// Atomically puts `quantity` units back unless the stock would overflow; `None` if the
    /// product is unknown or the stock would overflow.
    fn return_stock(&self, id: i64, quantity: i64) -> Result<Option<Product>, StoreError>;
    /// The current stock, `None` for an unknown product.
    fn stock_of(&self, id: i64) -> Result<Option<i64>, StoreError>;
}

/// The products table. Each method is one SQL statement.
pub trait ProductStore: StockStatements {
    type Tx: KeyedTx;

    /// A page of products ordered by id.
    fn list(&self, page: Page) -> Result<Vec<Product>, StoreError>;
    fn find(&self, id: i64) -> Result<Option<Product>, StoreError>;
    fn insert(&self, product: &NewProduct) -> Result<Product, StoreError>;
    /// Applies a non-empty update and bumps `updated_at`; `None` if there is no such product.
    fn update(&self, id: i64, changes: &ProductUpdate) -> Result<Option<Product>, StoreError>;
    /// True if a row was deleted.
    fn delete(&self, id: i64) -> Result<bool, StoreError>;
    /// Starts the transaction of one keyed stock change.
    fn begin(&self) -> Result<Self::Tx, StoreError>;
    /// Forgets up to `limit` keyed changes recorded more than `age_seconds` ago; returns
    /// how many.
    fn prune_keys(&self, age_seconds: i64, limit: i64) -> Result<u64, StoreError>;
}

/// A keyed change as it was first recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub product_id: i64,
    pub quantity: i64,
    pub answer: StockAnswer,
}

/// The transaction of one keyed stock change: the change and its record commit together.
/// Dropping it uncommitted rolls it back.
pub trait KeyedTx: StockStatements {
    /// What was recorded under `key` for `operation`, if anything.
    fn recorded(
        &self,
        key: &str,
        operation: StockOperation,
    ) -> Result<Option<Recorded>, StoreError>;
    /// Records the change with its answer; false when a concurrent request recorded the
    /// same key and operation first (this transaction must then roll back).
    fn record(&self, change: &KeyedChange, answer: &StockAnswer) -> Result<bool, StoreError>;
    fn commit(self) -> Result<(), StoreError>;
}

/// The service's key-value cache. An `Err` carries the cause; the service logs it and
/// carries on with the database.
pub trait ProductCache {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    fn set(&self, key: &str, value: &[u8], ttl_seconds: u32) -> Result<(), String>;
    fn delete(&self, key: &str) -> Result<(), String>;
}

/// The product use cases over a store and a cache.
pub struct ProductService<S, C> {
    store: S,
    cache: C,
    /// Read when a miss fills the cache, so a hit never asks for it.
    ttl_seconds: fn() -> u32,
    warn: fn(&str),
}

impl<S: ProductStore, C: ProductCache> ProductService<S, C> {
    /// `warn` receives cache failures (logged, never fatal).
    pub fn new(store: S, cache: C, ttl_seconds: fn() -> u32, warn: fn(&str)) -> Self {
        ProductService {
            store,
            cache,
            ttl_seconds,
            warn,
        }
    }

    pub fn list(&self, page: Page) -> Result<Vec<Product>, ProductError> {
        Ok(self.store.list(page)?)
    }

    /// Cache-aside read of one product: the cache first, the database on a miss (or an
    /// unreadable entry, or a cache that is down), then the cache is filled. A hit is served
    /// as the cached bytes.
    pub fn get(&self, id: i64) -> Result<ProductJson, ProductError> {
        let key = cache_key(id);
        match self.cache.get(&key) {
            Ok(Some(bytes)) => match ProductJson::cached(bytes, id) {
                Some(json) => return Ok(json),
                None => self.warn(&format!("ignoring unreadable cache entry `{key}`")),
            },
            Ok(None) => {}
            Err(cause) => self.warn(&format!("cache get `{key}` failed: {cause}")),
        }
        let product = self.store.find(id)?.ok_or(ProductError::NotFound)?;
        let json = ProductJson::of(&product);
        match self.cache.set(&key, json.as_bytes(), (self.ttl_seconds)()) {
            Ok(()) => self.verify_cached(id, &product),
            Err(cause) => self.warn(&format!("cache set `{key}` failed: {cause}")),
        }
        Ok(json)
    }

    /// Closes the classic cache-aside race: if a write committed and invalidated the key
    /// between our database read and our cache fill, the value we just cached is stale and
    /// would outlive the write's invalidation. Reading the row again after the fill tells;
    /// a changed (or vanished, or unreadable) row drops the key again. Deleting is always
    /// safe: at worst the next read is a miss.
    fn verify_cached(&self, id: i64, cached: &Product) {
        match self.store.find(id) {
            Ok(Some(current)) if current == *cached => {}
            _ => self.invalidate(id),
        }
    }

    pub fn create(&self, new: &NewProduct) -> Result<Product, ProductError> {
        let product = self.store.insert(new)?;
        // A fresh id has no entry, unless the table was reset under a live cache.
        self.invalidate(product.id);
        Ok(product)
    }

    /// Applies any subset of fields. An empty update writes nothing and returns the product.
    pub fn update(&self, id: i64, changes: &ProductUpdate) -> Result<Product, ProductError> {
        if changes.is_empty() {
            return self.store.find(id)?.ok_or(ProductError::NotFound);
        }
        let result = self.store.update(id, changes);
        self.invalidate(id);
        result?.ok_or(ProductError::NotFound)
    }

    pub fn delete(&self, id: i64) -> Result<(), ProductError> {
        let result = self.store.delete(id);
        self.invalidate(id);
        if result? {
            Ok(())
        } else {
            Err(ProductError::NotFound)
        }
    }

    /// Takes `quantity` units out of stock in one conditional UPDATE, so concurrent calls
    /// can never oversell; the product comes back with its decreased quantity.
    pub fn reserve(&self, id: i64, quantity: i64) -> Result<Product, ProductError> {
        let result = self.reserve_in_store(id, quantity);
        self.invalidate(id);
        result
    }

    fn reserve_in_store(&self, id: i64, quantity: i64) -> Result<Product, ProductError> {
        take_stock(&self.store, id, quantity)
    }

    /// Puts `quantity` units back in one UPDATE; the product comes back with its
    /// increased quantity.
    pub fn release(&self, id: i64, quantity: i64) -> Result<Product, ProductError> {
        let result = self.release_in_store(id, quantity);
        self.invalidate(id);
        result
    }

    fn release_in_store(&self, id: i64, quantity: i64) -> Result<Product, ProductError> {
        return_stock(&self.store, id, quantity)
    }

    /// A reserve or release under an idempotency key: applied at most once per key and
    /// operation, in one transaction with its record, and answered with the first answer
    /// ever since. A release whose key reserved nothing (the reservation was refused) puts
    /// nothing back. `Err` only for a store failure, which records nothing, so that the
    /// caller's retry with the same key is applied afresh.
    pub fn change_once(&self, change: &KeyedChange) -> Result<StockAnswer, StoreError> {
        let tx = self.store.begin()?;
        if let Some(first) = tx.recorded(&change.key, change.operation)? {
            return Ok(replay(change, &first));
        }
        let result = match change.operation {
            StockOperation::Reserve => take_stock(&tx, change.product_id, change.quantity),
            StockOperation::Release => match tx.recorded(&change.key, StockOperation::Reserve)? {
                Some(reserved) if !reserved.answer.is_success() => {
                    return Ok(StockAnswer::detail(
                        409,
                        &format!(
                            "Reservation `{}` was refused; there is nothing to release",
                            change.key
                        ),
                    ));
                }
                Some(reserved)
                    if (reserved.product_id, reserved.quantity)
                        != (change.product_id, change.quantity) =>
                {
                    return Ok(key_reused(change));
                }
                _ => return_stock(&tx, change.product_id, change.quantity),
            },
        };
        let answer = match result {
            Ok(product) => StockAnswer::product(&product),
            Err(ProductError::Store(error)) => return Err(error),
            Err(refusal) => StockAnswer::detail(refusal.status(), &refusal.to_string()),
        };
        if !tx.record(change, &answer)? {
            // A concurrent request with the same key committed first; ours rolls back.
            drop(tx);
            let tx = self.store.begin()?;
            let first = tx
                .recorded(&change.key, change.operation)?
                .ok_or_else(|| StoreError::Internal("a recorded key vanished".into()))?;
            return Ok(replay(change, &first));
        }
        tx.commit()?;
        if answer.is_success() {
            self.invalidate(change.product_id);
        }
        Ok(answer)
    }

    /// Forgets keyed changes older than `age_seconds`, `limit` at a time.
    pub fn prune_keys(&self, age_seconds: i64, limit: i64) -> Result<u64, StoreError> {
        self.store.prune_keys(age_seconds, limit)
    }

    /// Drops the cached copy after a write; a cache failure is only logged.
    fn invalidate(&self, id: i64) {
        let key = cache_key(id);
        if let Err(cause) = self.cache.delete(&key) {
            self.warn(&format!("cache delete `{key}` failed: {cause}"));
        }
    }

    fn warn(&self, message: &str) {
        (self.warn)(message);
    }
}

/// The first answer to a repeat of the same change; 422 when the key was used for
/// another product or quantity.
fn replay(change: &KeyedChange, first: &Recorded) -> StockAnswer {
    if (first.product_id, first.quantity) == (change.product_id, change.quantity) {
        first.answer.clone()
    } else {
        key_reused(change)
    }
}

fn key_reused(change: &KeyedChange) -> StockAnswer {
    StockAnswer::detail(
        422,
        &format!(
            "Idempotency-Key `{}` was already used for another product or quantity",
            change.key
        ),
    )
}

/// Takes `quantity` units out of stock in one conditional UPDATE, so concurrent calls can
/// never oversell.
fn take_stock(
    statements: &impl StockStatements,
    id: i64,
    quantity: i64,
) -> Result<Product, ProductError> {
    let mut available = 0;
    for _ in 0..STOCK_ATTEMPTS {
        if let Some(product) = statements.take_stock(id, quantity)? {
            return Ok(product);
        }
        // No row: either no such product or not enough stock.
        match statements.stock_of(id)? {
            None => return Err(ProductError::NotFound),
            Some(stock) if stock < quantity => {
                available = stock;
                break;
            }
            // Restocked between the two statements: try again.
            Some(stock) => available = stock,
        }
    }
    Err(ProductError::InsufficientStock {
        product_id: id,
        requested: quantity,
        available,
    })
}

/// Puts `quantity` units back in one UPDATE, unless the stock would overflow.
fn return_stock(
    statements: &impl StockStatements,
    id: i64,
    quantity: i64,
) -> Result<Product, ProductError> {
    let mut available = 0;
    for _ in 0..STOCK_ATTEMPTS {
        if let Some(product) = statements.return_stock(id, quantity)? {
            return Ok(product);
        }
        match statements.stock_of(id)? {
            None => return Err(ProductError::NotFound),
            Some(stock) if stock.checked_add(quantity).is_none() => {
                available = stock;
                break;
            }
            Some(stock) => available = stock,
        }
    }
    Err(ProductError::StockOverflow {
        product_id: id,
        requested: quantity,
        available,
    })
}

/// The cache TTL from the `cache_ttl_seconds` config value: the default when absent;
/// `Err` (with the default to use) when it is not a positive number of seconds.
pub fn ttl_from_config(raw: Option<&str>, default: u32) -> Result<u32, u32> {
    match raw {
        None => Ok(default),
        Some(text) => match text.trim().parse::<u32>() {
            Ok(seconds) if seconds > 0 => Ok(seconds),
            _ => Err(default),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::{BTreeMap, HashMap};
    use std::rc::Rc;

    // ---------- fakes ----------

    #[derive(Clone, Default)]
    struct MemoryStoreState {
        rows: BTreeMap<i64, Product>,
        keys: BTreeMap<(String, &'static str), Recorded>,
        next_id: i64,
        clock: u32,
        down: bool,
        finds: usize,
    }

    /// An in-memory products table with the SQL statements' semantics.
    #[derive(Clone, Default)]
    struct MemoryStore(Rc<RefCell<MemoryStoreState>>);

    impl MemoryStore {
        fn with(products: &[(i64, i64)]) -> Self {
            let store = MemoryStore::default();
            for (price_cents, quantity) in products {
                store
                    .insert(&NewProduct {
                        name: "Widget".into(),
                        description: None,
                        price_cents: *price_cents,
                        quantity: *quantity,
                    })
                    .unwrap();
            }
            store
        }

        fn now(state: &mut MemoryStoreState) -> String {
            state.clock += 1;
            format!("2026-11-25T10:00:{:02}Z", state.clock % 60)
        }

        fn check(&self) -> Result<(), StoreError> {
            if self.0.borrow().down {
                Err(StoreError::Unavailable("connection refused".into()))
            } else {
                Ok(())
            }
        }

        fn quantity(&self, id: i64) -> Option<i64> {
            self.0.borrow().rows.get(&id).map(|p| p.quantity)
        }

        fn set_quantity(&self, id: i64, quantity: i64) {
            let mut state = self.0.borrow_mut();
            let now = Self::now(&mut state);
            let row = state.rows.get_mut(&id).unwrap();
            row.quantity = quantity;
            row.updated_at = now;
        }
    }

    impl ProductStore for MemoryStore {
        type Tx = MemoryTx;

        fn list(&self, page: Page) -> Result<Vec<Product>, StoreError> {
            self.check()?;
            Ok(self
                .0
                .borrow()
                .rows
                .values()
                .skip(page.skip as usize)
                .take(page.limit as usize)
                .cloned()
                .collect())
        }

        fn find(&self, id: i64) -> Result<Option<Product>, StoreError> {
            self.check()?;
            self.0.borrow_mut().finds += 1;
            Ok(self.0.borrow().rows.get(&id).cloned())
        }

        fn insert(&self, new: &NewProduct) -> Result<Product, StoreError> {
            self.check()?;
            let mut state = self.0.borrow_mut();
            state.next_id += 1;
            let now = Self::now(&mut state);
            let product = Product {
                id: state.next_id,
                name: new.name.clone(),
                description: new.description.clone(),
                price_cents: new.price_cents,
                quantity: new.quantity,
                created_at: now.clone(),
                updated_at: now,
            };
            state.rows.insert(product.id, product.clone());
            Ok(product)
        }

        fn update(&self, id: i64, changes: &ProductUpdate) -> Result<Option<Product>, StoreError> {
            self.check()?;
            let mut state = self.0.borrow_mut();
            let now = Self::now(&mut state);
            let Some(row) = state.rows.get_mut(&id) else {
                return Ok(None);
            };
            if let Some(name) = &changes.name {
                row.name = name.clone();
            }
            if let Some(description) = &changes.description {
                row.description = description.clone();
            }
            if let Some(price) = changes.price_cents {
                row.price_cents = price;
            }
            if let Some(quantity) = changes.quantity {
                row.quantity = quantity;
            }
            row.updated_at = now;
            Ok(Some(row.clone()))
        }

        fn delete(&self, id: i64) -> Result<bool, StoreError> {
            self.check()?;
            Ok(self.0.borrow_mut().rows.remove(&id).is_some())
        }

        fn begin(&self) -> Result<MemoryTx, StoreError> {
            self.check()?;
            Ok(MemoryTx {
                store: self.clone(),
                before: Some(self.0.borrow().clone()),
            })
        }

        fn prune_keys(&self, _age_seconds: i64, limit: i64) -> Result<u64, StoreError> {
            self.check()?;
            let mut state = self.0.borrow_mut();
            let doomed: Vec<_> = state.keys.keys().take(limit as usize).cloned().collect();
            for key in &doomed {
                state.keys.remove(key);
            }
            Ok(doomed.len() as u64)
        }
    }

    impl StockStatements for MemoryStore {
        fn take_stock(&self, id: i64, quantity: i64) -> Result<Option<Product>, StoreError> {
            self.check()?;
            let mut state = self.0.borrow_mut();
            let now = Self::now(&mut state);
            match state.rows.get_mut(&id) {
                Some(row) if row.quantity >= quantity => {
                    row.quantity -= quantity;
                    row.updated_at = now;
                    Ok(Some(row.clone()))
                }
                _ => Ok(None),
            }
        }

        fn return_stock(&self, id: i64, quantity: i64) -> Result<Option<Product>, StoreError> {
            self.check()?;
            let mut state = self.0.borrow_mut();
            let now = Self::now(&mut state);
            match state.rows.get_mut(&id) {
                Some(row) if row.quantity <= i64::MAX - quantity => {
                    row.quantity += quantity;
                    row.updated_at = now;
                    Ok(Some(row.clone()))
                }
                _ => Ok(None),
            }
        }

        fn stock_of(&self, id: i64) -> Result<Option<i64>, StoreError> {
            self.check()?;
            Ok(self.quantity(id))
        }
    }

    /// A transaction over the fake: changes apply at once and are undone when it is
    /// dropped uncommitted, as a rollback would.
    struct MemoryTx {
        store: MemoryStore,
        before: Option<MemoryStoreState>,
    }

    impl Drop for MemoryTx {
        fn drop(&mut self) {
            if let Some(before) = self.before.take() {
                *self.store.0.borrow_mut() = before;
            }
        }
    }

    impl StockStatements for MemoryTx {
        fn take_stock(&self, id: i64, quantity: i64) -> Result<Option<Product>, StoreError> {
            self.store.take_stock(id, quantity)
        }

        fn return_stock(&self, id: i64, quantity: i64) -> Result<Option<Product>, StoreError> {
            self.store.return_stock(id, quantity)
        }

        fn stock_of(&self, id: i64) -> Result<Option<i64>, StoreError> {
            self.store.stock_of(id)
        }
    }

    impl KeyedTx for MemoryTx {
        fn recorded(
            &self,
            key: &str,
            operation: StockOperation,
        ) -> Result<Option<Recorded>, StoreError> {
            self.store.check()?;
            let state = self.store.0.borrow();
            Ok(state
                .keys
                .get(&(key.to_string(), operation.as_str()))
                .cloned())
        }

        fn record(&self, change: &KeyedChange, answer: &StockAnswer) -> Result<bool, StoreError> {
            self.store.check()?;
            let mut state = self.store.0.borrow_mut();
            let slot = (change.key.clone(), change.operation.as_str());
            if state.keys.contains_key(&slot) {
                return Ok(false);
            }
            state.keys.insert(
                slot,
                Recorded {
                    product_id: change.product_id,
                    quantity: change.quantity,
                    answer: answer.clone(),
                },
            );
            Ok(true)
        }

        fn commit(mut self) -> Result<(), StoreError> {
            self.store.check()?;
            self.before = None;
            Ok(())
        }
    }

    type SetHook = Box<dyn Fn()>;

    #[derive(Default)]
    struct MemoryCacheState {
        entries: HashMap<String, (Vec<u8>, u32)>,
        down: bool,
        gets: usize,
        deletes: Vec<String>,
        /// Runs just before a `set` lands (simulates a concurrent writer).
        before_set: Option<SetHook>,
    }

    #[derive(Clone, Default)]
    struct MemoryCache(Rc<RefCell<MemoryCacheState>>);

    impl MemoryCache {
        fn down() -> Self {
            let cache = MemoryCache::default();
            cache.0.borrow_mut().down = true;
            cache
        }

        fn entry(&self, key: &str) -> Option<Vec<u8>> {
            self.0
                .borrow()
                .entries
                .get(key)
                .map(|(value, _)| value.clone())
        }

        fn put(&self, key: &str, value: &[u8]) {
            self.0
                .borrow_mut()
                .entries
                .insert(key.into(), (value.to_vec(), 300));
        }
    }

    impl ProductCache for MemoryCache {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
            let mut state = self.0.borrow_mut();
            state.gets += 1;
            if state.down {
                return Err("unavailable: connection refused".into());
            }
            Ok(state.entries.get(key).map(|(value, _)| value.clone()))
        }

        fn set(&self, key: &str, value: &[u8], ttl_seconds: u32) -> Result<(), String> {
            if self.0.borrow().down {
                return Err("unavailable: connection refused".into());
            }
            let hook = self.0.borrow_mut().before_set.take();
            if let Some(hook) = hook {
                hook();
            }
            self.0
                .borrow_mut()
                .entries
                .insert(key.into(), (value.to_vec(), ttl_seconds));
            Ok(())
        }

        fn delete(&self, key: &str) -> Result<(), String> {
            let mut state = self.0.borrow_mut();
            state.deletes.push(key.into());
            if state.down {
                return Err("unavailable: connection refused".into());
            }
            state.entries.remove(key);
            Ok(())
        }
    }

    thread_local! {
        static WARNINGS: Cell<usize> = const { Cell::new(0) };
    }

    fn count_warning(_: &str) {
        WARNINGS.with(|w| w.set(w.get() + 1));
    }

    fn warnings() -> usize {
        WARNINGS.with(Cell::get)
    }

    fn service(
        store: &MemoryStore,
        cache: &MemoryCache,
    ) -> ProductService<MemoryStore, MemoryCache> {
        ProductService::new(store.clone(), cache.clone(), || 120, count_warning)
    }

    fn new_product(quantity: i64) -> NewProduct {
        NewProduct {
            name: "Gadget".into(),
            description: Some("shiny".into()),
            price_cents: 1250,
            quantity,
        }
    }

    // ---------- cache-aside reads ----------

    #[test]
    fn get_fills_the_cache_on_a_miss_then_serves_from_it() {
        let store = MemoryStore::with(&[(999, 5)]);
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        let product = service.get(1).unwrap().product();
        assert_eq!(product.quantity, 5);
        let (value, ttl) = cache.0.borrow().entries["product:1"].clone();
        assert_eq!(ttl, 120);
        assert_eq!(Product::from_cache_value(&value), Some(product.clone()));

        let finds = store.0.borrow().finds;
        assert_eq!(service.get(1).unwrap().product(), product);
        assert_eq!(
            store.0.borrow().finds,
            finds,
            "a hit does not touch the database"
        );
    }

    #[test]
    fn get_of_an_unknown_product_is_not_found_and_not_cached() {
        let store = MemoryStore::default();
        let cache = MemoryCache::default();
        assert_eq!(service(&store, &cache).get(3), Err(ProductError::NotFound));
        assert!(cache.0.borrow().entries.is_empty());
    }

    #[test]
    fn an_unreadable_cache_entry_is_a_miss_and_gets_replaced() {
        let store = MemoryStore::with(&[(999, 5)]);
        let cache = MemoryCache::default();
        cache.put("product:1", b"{garbage");
        let before = warnings();
        let product = service(&store, &cache).get(1).unwrap().product();
        assert_eq!(product.quantity, 5);
        assert!(warnings() > before);
        assert_eq!(cache.entry("product:1"), Some(product.to_cache_value()));
    }

    #[test]
    fn a_cache_entry_of_another_id_is_a_miss() {
        let store = MemoryStore::with(&[(999, 5), (100, 1)]);
        let cache = MemoryCache::default();
        let other = store.find(2).unwrap().unwrap();
        cache.put("product:1", &other.to_cache_value());
        assert_eq!(service(&store, &cache).get(1).unwrap().product().id, 1);
    }

    #[test]
    fn reads_and_writes_work_with_the_cache_down() {
        let store = MemoryStore::with(&[(999, 5)]);
        let cache = MemoryCache::down();
        let service = service(&store, &cache);
        let before = warnings();
        assert_eq!(service.get(1).unwrap().product().quantity, 5);
        assert_eq!(service.reserve(1, 2).unwrap().quantity, 3);
        assert_eq!(service.release(1, 1).unwrap().quantity, 4);
        let update = ProductUpdate {
            name: Some("Renamed".into()),
            ..Default::default()
        };
        assert_eq!(service.update(1, &update).unwrap().name, "Renamed");
        assert_eq!(service.get(1).unwrap().product().name, "Renamed");
        let created = service.create(&new_product(1)).unwrap();
        service.delete(created.id).unwrap();
        assert!(warnings() >= before + 6, "every cache failure is logged");
    }

    #[test]
    fn a_write_racing_a_cache_fill_cannot_leave_a_stale_entry() {
        // Reader: miss, reads quantity 5 from the database. Before its cache set lands, a
        // writer commits a reservation and invalidates the (still absent) key.
        let store = MemoryStore::with(&[(999, 5)]);
        let cache = MemoryCache::default();
        let writer_store = store.clone();
        cache.0.borrow_mut().before_set = Some(Box::new(move || {
            writer_store.set_quantity(1, 4);
        }));
        let service = service(&store, &cache);
        assert_eq!(
            service.get(1).unwrap().product().quantity,
            5,
            "the read itself linearises before the write"
        );
        assert_eq!(cache.entry("product:1"), None, "the stale fill was dropped");
        assert_eq!(service.get(1).unwrap().product().quantity, 4);
        assert!(cache.entry("product:1").is_some());
    }

    // ---------- writes invalidate ----------

    #[test]
    fn every_write_invalidates_the_key_so_reads_see_it() {
        let store = MemoryStore::with(&[(999, 10)]);
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        service.get(1).unwrap().product();

        let update = ProductUpdate {
            price_cents: Some(500),
            ..Default::default()
        };
        service.update(1, &update).unwrap();
        assert_eq!(cache.entry("product:1"), None);
        assert_eq!(service.get(1).unwrap().product().price_cents, 500);

        service.reserve(1, 3).unwrap();
        assert_eq!(cache.entry("product:1"), None);
        assert_eq!(service.get(1).unwrap().product().quantity, 7);

        service.release(1, 2).unwrap();
        assert_eq!(cache.entry("product:1"), None);
        assert_eq!(service.get(1).unwrap().product().quantity, 9);

        service.delete(1).unwrap();
        assert_eq!(cache.entry("product:1"), None);
        assert_eq!(service.get(1), Err(ProductError::NotFound));
    }

    #[test]
    fn create_returns_the_stored_product() {
        let store = MemoryStore::default();
        let cache = MemoryCache::default();
        let product = service(&store, &cache).create(&new_product(4)).unwrap();
        assert_eq!(product.id, 1);
        assert_eq!(product.name, "Gadget");
        assert_eq!(product.description.as_deref(), Some("shiny"));
        assert_eq!((product.price_cents, product.quantity), (1250, 4));
        assert_eq!(store.find(1).unwrap(), Some(product));
    }

    #[test]
    fn update_applies_only_the_given_fields() {
        let store = MemoryStore::default();
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        let created = service.create(&new_product(4)).unwrap();
        let cleared = service
            .update(
                1,
                &ProductUpdate {
                    description: Some(None),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(cleared.description, None);
        assert_eq!(
            (cleared.name.as_str(), cleared.price_cents, cleared.quantity),
            ("Gadget", 1250, 4)
        );
        assert_eq!(cleared.created_at, created.created_at);
        assert_ne!(cleared.updated_at, created.updated_at);
    }

    #[test]
    fn an_empty_update_changes_nothing() {
        let store = MemoryStore::default();
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        let created = service.create(&new_product(4)).unwrap();
        assert_eq!(service.update(1, &ProductUpdate::default()), Ok(created));
        assert_eq!(
            service.update(9, &ProductUpdate::default()),
            Err(ProductError::NotFound)
        );
    }

    #[test]
    fn writes_to_unknown_products_are_not_found() {
        let store = MemoryStore::default();
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        let update = ProductUpdate {
            quantity: Some(1),
            ..Default::default()
        };
        assert_eq!(service.update(5, &update), Err(ProductError::NotFound));
        assert_eq!(service.delete(5), Err(ProductError::NotFound));
        assert_eq!(service.reserve(5, 1), Err(ProductError::NotFound));
        assert_eq!(service.release(5, 1), Err(ProductError::NotFound));
    }

    // ---------- stock ----------

    #[test]
    fn reserve_takes_stock_down_to_zero_and_never_below() {
        let store = MemoryStore::with(&[(999, 10)]);
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        let successes = (0..40).filter(|_| service.reserve(1, 1).is_ok()).count();
        assert_eq!(successes, 10);
        assert_eq!(store.quantity(1), Some(0));
        assert_eq!(
            service.reserve(1, 1),
            Err(ProductError::InsufficientStock {
                product_id: 1,
                requested: 1,
                available: 0
            })
        );
    }

    #[test]
    fn reserve_reports_the_available_stock() {
        let store = MemoryStore::with(&[(999, 3)]);
        let cache = MemoryCache::default();
        let error = service(&store, &cache).reserve(1, 5).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Not enough stock for product 1: requested 5, available 3"
        );
        assert_eq!(
            store.quantity(1),
            Some(3),
            "a refused reservation changes nothing"
        );
    }

    #[test]
    fn release_puts_stock_back() {
        let store = MemoryStore::with(&[(999, 0)]);
        let cache = MemoryCache::default();
        let product = service(&store, &cache).release(1, 7).unwrap();
        assert_eq!(product.quantity, 7);
    }

    #[test]
    fn release_never_overflows_the_stock() {
        let store = MemoryStore::with(&[(999, i64::MAX - 1)]);
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        let error = service.release(1, 2).unwrap_err();
        assert_eq!(error.status(), 409);
        assert!(
            matches!(error, ProductError::StockOverflow { available, .. } if available == i64::MAX - 1)
        );
        assert_eq!(service.release(1, 1).unwrap().quantity, i64::MAX);
    }

    // ---------- keyed (idempotent) stock changes ----------

    fn keyed(key: &str, operation: StockOperation, product_id: i64, quantity: i64) -> KeyedChange {
        KeyedChange {
            key: key.into(),
            operation,
            product_id,
            quantity,
        }
    }

    #[test]
    fn a_keyed_reservation_applies_once_and_a_repeat_gets_the_first_answer() {
        let store = MemoryStore::with(&[(999, 5)]);
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        let reserve = keyed("r-1", StockOperation::Reserve, 1, 2);
        let first = service.change_once(&reserve).unwrap();
        assert_eq!(first.status, 200);
        assert_eq!(store.quantity(1), Some(3));
        // Stock changes meanwhile; the repeat still answers what the first call answered.
        store.set_quantity(1, 10);
        assert_eq!(service.change_once(&reserve).unwrap(), first);
        assert_eq!(store.quantity(1), Some(10));
    }

    #[test]
    fn a_refused_keyed_reservation_is_replayed_and_releases_nothing() {
        let store = MemoryStore::with(&[(999, 1)]);
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        let refused = service
            .change_once(&keyed("r-2", StockOperation::Reserve, 1, 5))
            .unwrap();
        assert_eq!(refused.status, 409);
        store.set_quantity(1, 50);
        assert_eq!(
            service
                .change_once(&keyed("r-2", StockOperation::Reserve, 1, 5))
                .unwrap(),
            refused,
            "restocking does not turn a recorded refusal into a reservation"
        );
        let release = service
            .change_once(&keyed("r-2", StockOperation::Release, 1, 5))
            .unwrap();
        assert_eq!(release.status, 409);
        assert_eq!(store.quantity(1), Some(50));
    }

    #[test]
    fn a_keyed_release_puts_stock_back_once() {
        let store = MemoryStore::with(&[(999, 5)]);
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        service
            .change_once(&keyed("r-3", StockOperation::Reserve, 1, 4))
            .unwrap();
        let release = keyed("r-3", StockOperation::Release, 1, 4);
        for _ in 0..3 {
            assert_eq!(service.change_once(&release).unwrap().status, 200);
        }
        assert_eq!(store.quantity(1), Some(5));
        // A release under a key that reserved nothing is a plain release, also applied once.
        let plain = keyed("order-9-release", StockOperation::Release, 1, 2);
        service.change_once(&plain).unwrap();
        service.change_once(&plain).unwrap();
        assert_eq!(store.quantity(1), Some(7));
    }

    #[test]
    fn a_key_reused_for_another_request_is_refused_without_effect() {
        let store = MemoryStore::with(&[(999, 5), (999, 5)]);
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        service
            .change_once(&keyed("r-4", StockOperation::Reserve, 1, 1))
            .unwrap();
        for change in [
            keyed("r-4", StockOperation::Reserve, 1, 2),
            keyed("r-4", StockOperation::Reserve, 2, 1),
            keyed("r-4", StockOperation::Release, 1, 3),
        ] {
            assert_eq!(service.change_once(&change).unwrap().status, 422);
        }
        assert_eq!((store.quantity(1), store.quantity(2)), (Some(4), Some(5)));
    }

    #[test]
    fn a_keyed_change_that_fails_in_the_store_records_nothing() {
        let store = MemoryStore::with(&[(999, 5)]);
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        let reserve = keyed("r-5", StockOperation::Reserve, 1, 2);
        store.0.borrow_mut().down = true;
        assert!(matches!(
            service.change_once(&reserve),
            Err(StoreError::Unavailable(_))
        ));
        store.0.borrow_mut().down = false;
        assert_eq!(store.quantity(1), Some(5));
        assert_eq!(service.change_once(&reserve).unwrap().status, 200);
        assert_eq!(store.quantity(1), Some(3));
    }

    #[test]
    fn a_successful_keyed_change_invalidates_the_cached_product() {
        let store = MemoryStore::with(&[(999, 5)]);
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        service.get(1).unwrap().product();
        service
            .change_once(&keyed("r-6", StockOperation::Reserve, 1, 1))
            .unwrap();
        assert_eq!(cache.entry("product:1"), None);
        assert_eq!(service.get(1).unwrap().product().quantity, 4);
    }

    #[test]
    fn database_errors_propagate() {
        let store = MemoryStore::with(&[(999, 3)]);
        store.0.borrow_mut().down = true;
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        let down = ProductError::Store(StoreError::Unavailable("connection refused".into()));
        assert_eq!(service.get(1), Err(down.clone()));
        assert_eq!(service.reserve(1, 1), Err(down.clone()));
        assert_eq!(service.release(1, 1), Err(down.clone()));
        assert_eq!(service.delete(1), Err(down.clone()));
        assert_eq!(service.list(Page { skip: 0, limit: 10 }), Err(down));
    }

    #[test]
    fn list_pages_in_id_order() {
        let store = MemoryStore::with(&[(1, 1), (2, 2), (3, 3), (4, 4)]);
        let cache = MemoryCache::default();
        let service = service(&store, &cache);
        let ids = |page| {
            service
                .list(page)
                .unwrap()
                .iter()
                .map(|p| p.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(Page {
                skip: 0,
                limit: 100
            }),
            vec![1, 2, 3, 4]
        );
        assert_eq!(ids(Page { skip: 1, limit: 2 }), vec![2, 3]);
        assert_eq!(ids(Page { skip: 10, limit: 2 }), Vec::<i64>::new());
    }

    // ---------- errors and config ----------

    #[test]
    fn errors_map_to_statuses_and_details() {
        let cases = [
            (ProductError::NotFound, 404, "Product not found".to_string()),
            (
                ProductError::InsufficientStock {
                    product_id: 4,
                    requested: 3,
                    available: 1,
                },
                409,
                "Not enough stock for product 4: requested 3, available 1".to_string(),
            ),
            (
                ProductError::StockOverflow {
                    product_id: 4,
                    requested: 3,
                    available: i64::MAX,
                },
                409,
                format!(
                    "Cannot release 3 units of product 4: stock {} would exceed the maximum of {}",
                    i64::MAX,
                    i64::MAX
                ),
            ),
            (
                ProductError::Store(StoreError::Unavailable("tcp refused".into())),
                503,
                "Database unavailable".to_string(),
            ),
            (
                ProductError::Store(StoreError::Internal("syntax error at SELECT".into())),
                500,
                "Internal Server Error".to_string(),
            ),
        ];
        for (error, status, detail) in cases {
            assert_eq!(error.status(), status);
            assert_eq!(error.to_string(), detail);
        }
    }

    #[test]
    fn ttl_config() {
        assert_eq!(ttl_from_config(None, 300), Ok(300));
        assert_eq!(ttl_from_config(Some("60"), 300), Ok(60));
        assert_eq!(ttl_from_config(Some(" 60 "), 300), Ok(60));
        assert_eq!(ttl_from_config(Some("0"), 300), Err(300));
        assert_eq!(ttl_from_config(Some("-5"), 300), Err(300));
        assert_eq!(ttl_from_config(Some("soon"), 300), Err(300));
    }
}
