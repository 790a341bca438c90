//! All SQL of the order service, through the database capability.
//!
//! Portable SQL (PostgreSQL today, SQLite later): `$n` placeholders, `RETURNING`, `now()`.

use crate::model::{Order, OrderDraft, OrderStatus, OutboxEvent};
use crate::ports::{Store, StoreError, StoreTx};
use platform_guest::database::{self, Rows, Transaction, Value};
use platform_guest::db::{first, rows, Row};
use platform_guest::pagination::Page;

/// How long the request that wrote an outbox row has to publish it before other requests
/// treat it as left behind (its publish failed, or its instance stopped).
const OUTBOX_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// The columns every order query returns, in [`order_from_row`]'s terms.
const ORDER_COLUMNS: &str = "id, user_id, product_id, product_name, quantity, unit_price_cents, \
                             total_price_cents, status, created_at, updated_at";

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
        let cutoff = chrono::Utc::now() - OUTBOX_GRACE;
        let result = database::query(
            "SELECT id FROM outbox WHERE created_at < $1 ORDER BY id LIMIT $2",
            &[
                Value::Timestamp(cutoff.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                Value::Int(limit),
            ],
        )?;
        Ok(rows(&result)
            .map(|row| row.int("id"))
            .collect::<Result<_, _>>()?)
    }
}

/// A database transaction; dropping it uncommitted rolls it back.
pub struct DbTx(Transaction);

impl StoreTx for DbTx {
    fn insert_order(&mut self, draft: &OrderDraft) -> Result<Order, StoreError> {
        let result = self.0.query(
            &format!(
                "INSERT INTO orders (user_id, product_id, product_name, quantity, \
                 unit_price_cents, total_price_cents, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ORDER_COLUMNS}"
            ),
            &[
                Value::Int(draft.user_id),
                Value::Int(draft.product_id),
                Value::Text(draft.product_name.clone()),
                Value::Int(draft.quantity),
                Value::Int(draft.unit_price_cents),
                Value::Int(draft.total_price_cents),
                Value::Text(draft.status.as_str().to_string()),
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

    fn insert_event(&mut self, event: &OutboxEvent) -> Result<i64, StoreError> {
        let result = self.0.query(
            "INSERT INTO outbox (exchange, routing_key, event_id, payload) VALUES ($1, $2, $3, $4) \
             RETURNING id",
            &[
                Value::Text(event.exchange.clone()),
                Value::Text(event.routing_key.clone()),
                Value::Text(event.event_id.clone()),
                Value::Text(event.payload.clone()),
            ],
        )?;
        let row = first(&result)
            .ok_or_else(|| StoreError::Internal("INSERT ... RETURNING gave no row".into()))?;
        Ok(row.int("id")?)
    }

    fn take_event(&mut self, id: i64) -> Result<Option<OutboxEvent>, StoreError> {
        let result = self.0.query(
            "DELETE FROM outbox WHERE id = $1 RETURNING exchange, routing_key, event_id, payload",
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
