//! All SQL of the order service, through the database capability.
//!
//! Portable SQL (PostgreSQL and SQLite): `$n` placeholders, `RETURNING`, `now()`.

use crate::model::{Order, OrderDraft, OrderStatus, OutboxEvent, StockAction, StockChange};
use crate::ports::{Store, StoreError, StoreTx};
use platform_guest::database::{self, Rows, Transaction, Value};
use platform_guest::db::{first, rows, Row};
use platform_guest::pagination::Page;

/// How long the request that wrote an outbox row has to publish it before other requests
/// treat it as left behind (its publish failed, or its instance stopped).
const OUTBOX_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

const STOCK_CHANGE_COLUMNS: &str =
    "id, idempotency_key, action, product_id, quantity, caller_authorization";

fn stock_change_from_row(row: &Row<'_>) -> Result<StockChange, StoreError> {
    let action = row.text("action")?;
    Ok(StockChange {
        id: row.int("id")?,
        key: row.text("idempotency_key")?,
        action: StockAction::parse(&action)
            .ok_or_else(|| StoreError::Internal(format!("unknown stock action `{action}`")))?,
        product_id: row.int("product_id")?,
        quantity: row.int("quantity")?,
        authorization: row.optional_text("caller_authorization")?,
    })
}

fn stock_change_params(change: &StockChange) -> Vec<Value> {
    vec![
        Value::Text(change.key.clone()),
        Value::Text(change.action.as_str().into()),
        Value::Int(change.product_id),
        Value::Int(change.quantity),
        match &change.authorization {
            Some(authorization) => Value::Text(authorization.clone()),
            None => Value::Null,
        },
    ]
}

const INSERT_STOCK_CHANGE: &str = "INSERT INTO stock_changes \
     (idempotency_key, action, product_id, quantity, caller_authorization) \
     VALUES ($1, $2, $3, $4, $5) \
     RETURNING id, idempotency_key, action, product_id, quantity, caller_authorization";

fn inserted_stock_change(result: &Rows) -> Result<StockChange, StoreError> {
    let row = first(result)
        .ok_or_else(|| StoreError::Internal("INSERT ... RETURNING gave no row".into()))?;
    stock_change_from_row(&row)
}

fn cutoff(grace: chrono::TimeDelta) -> Value {
    let cutoff = chrono::Utc::now() - grace;
    Value::Timestamp(cutoff.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// The columns every order query returns, in [`order_from_row`]'s terms.
const ORDER_COLUMNS: &str = "id, user_id, product_id, product_name, quantity, unit_price_cents, \
                             total_price_cents, status, created_at, updated_at, reservation_id";

fn order_from_row(row: &Row<'_>) -> Result<Order, StoreError> {
    let status = row.text("status")?;
    Ok(Order {
        id: row.int("id")?,
        user_id: row.int("user_id")?,
        product_id: row.int("product_id")?,
        product_name: row.text("product_name")?,
        quantity: row.int("quantity")?,
        unit_price_cents: row.int("unit_price_cents")?,
        total_price_cents: row.int("total_price_cents")?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Internal(format!("unknown order status `{status}`")))?,
        created_at: row.timestamp("created_at")?,
        updated_at: row.timestamp("updated_at")?,
        reservation_id: row.optional_text("reservation_id")?,
    })
}

fn first_order(result: &Rows) -> Result<Option<Order>, StoreError> {
    first(result).map(|row| order_from_row(&row)).transpose()
}

/// The order service's database.
pub struct Repository;

impl Store for Repository {
    type Tx = DbTx;

    fn begin(&self) -> Result<DbTx, StoreError> {
        Ok(DbTx(database::begin()?))
    }

    fn find_order(&self, id: i64) -> Result<Option<Order>, StoreError> {
        let result = database::query(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"),
            &[Value::Int(id)],
        )?;
        first_order(&result)
    }

    fn list_orders(&self, user_id: i64, page: Page) -> Result<Vec<Order>, StoreError> {
        let result = database::query(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
            ),
            &[
                Value::Int(user_id),
                Value::Int(page.limit),
                Value::Int(page.skip),
            ],
        )?;
        rows(&result).map(|row| order_from_row(&row)).collect()
    }

    fn stale_event_ids(&self, limit: i64) -> Result<Vec<i64>, StoreError> {
        let result = database::query(
            "SELECT id FROM outbox WHERE created_at < $1 ORDER BY id LIMIT $2",
            &[cutoff(OUTBOX_GRACE), Value::Int(limit)],
        )?;
        Ok(rows(&result)
            .map(|row| row.int("id"))
            .collect::<Result<_, _>>()?)
    }

    fn delete_event(&self, id: i64) -> Result<(), StoreError> {
        database::execute("DELETE FROM outbox WHERE id = $1", &[Value::Int(id)])?;
        Ok(())
    }

    fn record_stock_change(&self, change: &StockChange) -> Result<StockChange, StoreError> {
        inserted_stock_change(&database::query(
            INSERT_STOCK_CHANGE,
            &stock_change_params(change),
        )?)
    }

    fn forget_stock_change(&self, id: i64) -> Result<(), StoreError> {
        database::execute("DELETE FROM stock_changes WHERE id = $1", &[Value::Int(id)])?;
        Ok(())
    }

    fn unsettled_stock_changes(
        &self,
        older_than_seconds: i64,
        limit: i64,
    ) -> Result<Vec<StockChange>, StoreError> {
        let result = database::query(
            &format!(
                "SELECT {STOCK_CHANGE_COLUMNS} FROM stock_changes WHERE created_at < $1 \
                 ORDER BY id LIMIT $2"
            ),
            &[
                cutoff(chrono::TimeDelta::seconds(older_than_seconds)),
                Value::Int(limit),
            ],
        )?;
        rows(&result)
            .map(|row| stock_change_from_row(&row))
            .collect()
    }
}

/// A database transaction; dropping it uncommitted rolls it back.
pub struct DbTx(Transaction);

impl StoreTx for DbTx {
    fn insert_order(&mut self, draft: &OrderDraft) -> Result<Order, StoreError> {
        let result = self.0.query(
            &format!(
                "INSERT INTO orders (user_id, product_id, product_name, quantity, \
                 unit_price_cents, total_price_cents, status, reservation_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {ORDER_COLUMNS}"
            ),
            &[
                Value::Int(draft.user_id),
                Value::Int(draft.product_id),
                Value::Text(draft.product_name.clone()),
                Value::Int(draft.quantity),
                Value::Int(draft.unit_price_cents),
                Value::Int(draft.total_price_cents),
                Value::Text(draft.status.as_str().to_string()),
                Value::Text(draft.reservation_id.clone()),
            ],
        )?;
        first_order(&result)?
            .ok_or_else(|| StoreError::Internal("INSERT ... RETURNING gave no row".into()))
    }

    fn set_status(&mut self, id: i64, status: OrderStatus) -> Result<Option<Order>, StoreError> {
        // The status guard makes a cancel happen once: concurrent updates of the row wait
        // for its lock, then see the committed `cancelled` and match nothing.
        let result = self.0.query(
            &format!(
                "UPDATE orders SET status = $2, updated_at = now() \
                 WHERE id = $1 AND status <> 'cancelled' RETURNING {ORDER_COLUMNS}"
            ),
            &[Value::Int(id), Value::Text(status.as_str().to_string())],
        )?;
        first_order(&result)
    }

    fn delete_order(&mut self, id: i64) -> Result<Option<Order>, StoreError> {
        let result = self.0.query(
            &format!("DELETE FROM orders WHERE id = $1 RETURNING {ORDER_COLUMNS}"),
            &[Value::Int(id)],
        )?;
        first_order(&result)
    }

    fn insert_stock_change(&mut self, change: &StockChange) -> Result<StockChange, StoreError> {
        inserted_stock_change(
            &self
                .0
                .query(INSERT_STOCK_CHANGE, &stock_change_params(change))?,
        )
    }

    fn delete_stock_change(&mut self, id: i64) -> Result<(), StoreError> {
        self.0
            .execute("DELETE FROM stock_changes WHERE id = $1", &[Value::Int(id)])?;
        Ok(())
    }

    fn insert_event(&mut self, event: &OutboxEvent) -> Result<i64, StoreError> {
        let result = self.0.query(
            "INSERT INTO outbox (exchange, routing_key, event_id, payload, traceparent) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                Value::Text(event.exchange.clone()),
                Value::Text(event.routing_key.clone()),
                Value::Text(event.event_id.clone()),
                Value::Text(event.payload.clone()),
                event.traceparent.clone().map_or(Value::Null, Value::Text),
            ],
        )?;
        let row = first(&result)
            .ok_or_else(|| StoreError::Internal("INSERT ... RETURNING gave no row".into()))?;
        Ok(row.int("id")?)
    }

    fn take_event(&mut self, id: i64) -> Result<Option<OutboxEvent>, StoreError> {
        let result = self.0.query(
            "DELETE FROM outbox WHERE id = $1 \
             RETURNING exchange, routing_key, event_id, payload, traceparent",
            &[Value::Int(id)],
        )?;
        let Some(row) = first(&result) else {
            return Ok(None);
        };
        Ok(Some(OutboxEvent {
            exchange: row.text("exchange")?,
            routing_key: row.text("routing_key")?,
            event_id: row.text("event_id")?,
            payload: row.text("payload")?,
            traceparent: row.optional_text("traceparent")?,
        }))
    }

    fn commit(self) -> Result<(), StoreError> {
        Ok(self.0.commit()?)
    }

    fn rollback(self) {
        if let Err(error) = self.0.rollback() {
            crate::log::warn(&format!(
                "rollback failed (the transaction ends anyway): {error:?}"
            ));
        }
    }
}
