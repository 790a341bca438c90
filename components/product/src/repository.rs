//! All SQL of the product service, over the host's database capability.
//!
//! Every operation is a single statement; stock changes are conditional UPDATEs so that
//! concurrent calls serialise on the row lock and can never oversell. A keyed stock change
//! runs the same statements inside a [`KeyedTransaction`] with its `stock_operations` row.

use crate::model::{KeyedChange, NewProduct, Product, ProductUpdate, StockAnswer, StockOperation};
use crate::service::{KeyedTx, ProductStore, Recorded, StockStatements, StoreError};
use platform_guest::database::{self, Rows, Transaction, Value};
use platform_guest::db::{first, rows, ColumnError, Row};
use platform_guest::pagination::Page;

/// The columns every statement returns, in `Product` order.
const COLUMNS: &str = "id, name, description, price_cents, quantity, created_at, updated_at";

/// The products table in the service's own database.
pub struct Repository;

fn product(row: &Row<'_>) -> Result<Product, ColumnError> {
    Ok(Product {
        id: row.int("id")?,
        name: row.text("name")?,
        description: row.optional_text("description")?,
        price_cents: row.int("price_cents")?,
        quantity: row.int("quantity")?,
        created_at: row.timestamp("created_at")?,
        updated_at: row.timestamp("updated_at")?,
    })
}

fn query(sql: &str, params: &[Value]) -> Result<Rows, StoreError> {
    Ok(database::query(sql, params)?)
}

fn one(result: &Rows) -> Result<Option<Product>, StoreError> {
    Ok(first(result).map(|row| product(&row)).transpose()?)
}

fn text_or_null(value: &Option<String>) -> Value {
    match value {
        Some(text) => Value::Text(text.clone()),
        None => Value::Null,
    }
}

/// `UPDATE products SET <present fields>, updated_at = now() WHERE id = $n RETURNING ...`
/// with its parameters; the field order is fixed so the SQL text is predictable.
pub fn update_statement(id: i64, changes: &ProductUpdate) -> (String, Vec<Value>) {
    let mut assignments = Vec::new();
    let mut params = Vec::new();
    let mut assign = |column: &str, value: Value| {
        params.push(value);
        assignments.push(format!("{column} = ${}", params.len()));
    };
    if let Some(name) = &changes.name {
        assign("name", Value::Text(name.clone()));
    }
    if let Some(description) = &changes.description {
        assign("description", text_or_null(description));
    }
    if let Some(price_cents) = changes.price_cents {
        assign("price_cents", Value::Int(price_cents));
    }
    if let Some(quantity) = changes.quantity {
        assign("quantity", Value::Int(quantity));
    }
    params.push(Value::Int(id));
    let sql = format!(
        "UPDATE products SET {}, updated_at = now() WHERE id = ${} RETURNING {COLUMNS}",
        assignments.join(", "),
        params.len()
    );
    (sql, params)
}

impl ProductStore for Repository {
    type Tx = KeyedTransaction;

    fn list(&self, page: Page) -> Result<Vec<Product>, StoreError> {
        let result = query(
            &format!("SELECT {COLUMNS} FROM products ORDER BY id LIMIT $1 OFFSET $2"),
            &[Value::Int(page.limit), Value::Int(page.skip)],
        )?;
        Ok(rows(&result)
            .map(|row| product(&row))
            .collect::<Result<_, _>>()?)
    }

    fn find(&self, id: i64) -> Result<Option<Product>, StoreError> {
        one(&query(
            &format!("SELECT {COLUMNS} FROM products WHERE id = $1"),
            &[Value::Int(id)],
        )?)
    }

    fn insert(&self, new: &NewProduct) -> Result<Product, StoreError> {
        let result = query(
            &format!(
                "INSERT INTO products (name, description, price_cents, quantity) \
                 VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
            ),
            &[
                Value::Text(new.name.clone()),
                text_or_null(&new.description),
                Value::Int(new.price_cents),
                Value::Int(new.quantity),
            ],
        )?;
        one(&result)?.ok_or_else(|| StoreError::Internal("INSERT returned no row".into()))
    }

    fn update(&self, id: i64, changes: &ProductUpdate) -> Result<Option<Product>, StoreError> {
        let (sql, params) = update_statement(id, changes);
        one(&query(&sql, &params)?)
    }

    fn delete(&self, id: i64) -> Result<bool, StoreError> {
        Ok(database::execute("DELETE FROM products WHERE id = $1", &[Value::Int(id)])? > 0)
    }

    fn begin(&self) -> Result<KeyedTransaction, StoreError> {
        Ok(KeyedTransaction(database::begin()?))
    }

    fn prune_keys(&self, age_seconds: i64, limit: i64) -> Result<u64, StoreError> {
        let cutoff = chrono::Utc::now() - chrono::TimeDelta::seconds(age_seconds);
        // Oldest first through the created_at index; a bounded batch keeps each call short.
        Ok(database::execute(
            "DELETE FROM stock_operations WHERE (idempotency_key, operation) IN \
             (SELECT idempotency_key, operation FROM stock_operations \
              WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
            &[
                Value::Timestamp(cutoff.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                Value::Int(limit),
            ],
        )?)
    }
}

/// Where a statement runs: on its own, or inside a transaction.
trait Sql {
    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, StoreError>;
}

impl Sql for Repository {
    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, StoreError> {
        query(sql, params)
    }
}

impl Sql for KeyedTransaction {
    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, StoreError> {
        Ok(self.0.query(sql, params)?)
    }
}

impl<T: Sql> StockStatements for T {
    fn take_stock(&self, id: i64, quantity: i64) -> Result<Option<Product>, StoreError> {
        one(&self.query(
            &format!(
                "UPDATE products SET quantity = quantity - $1, updated_at = now() \
                 WHERE id = $2 AND quantity >= $1 RETURNING {COLUMNS}"
            ),
            &[Value::Int(quantity), Value::Int(id)],
        )?)
    }

    fn return_stock(&self, id: i64, quantity: i64) -> Result<Option<Product>, StoreError> {
        // $3 is the largest stock that can take `quantity` more without leaving BIGINT.
        one(&self.query(
            &format!(
                "UPDATE products SET quantity = quantity + $1, updated_at = now() \
                 WHERE id = $2 AND quantity <= $3 RETURNING {COLUMNS}"
            ),
            &[
                Value::Int(quantity),
                Value::Int(id),
                Value::Int(i64::MAX - quantity),
            ],
        )?)
    }

    fn stock_of(&self, id: i64) -> Result<Option<i64>, StoreError> {
        let result = self.query(
            "SELECT quantity FROM products WHERE id = $1",
            &[Value::Int(id)],
        )?;
        Ok(first(&result).map(|row| row.int("quantity")).transpose()?)
    }
}

/// The transaction of one keyed stock change; dropped uncommitted, it rolls back.
pub struct KeyedTransaction(Transaction);

impl KeyedTx for KeyedTransaction {
    fn recorded(
        &self,
        key: &str,
        operation: StockOperation,
    ) -> Result<Option<Recorded>, StoreError> {
        let result = self.query(
            "SELECT product_id, quantity, status, body FROM stock_operations \
             WHERE idempotency_key = $1 AND operation = $2",
            &[
                Value::Text(key.into()),
                Value::Text(operation.as_str().into()),
            ],
        )?;
        let Some(row) = first(&result) else {
            return Ok(None);
        };
        let status = row.int("status")?;
        Ok(Some(Recorded {
            product_id: row.int("product_id")?,
            quantity: row.int("quantity")?,
            answer: StockAnswer {
                status: u16::try_from(status)
                    .map_err(|_| StoreError::Internal(format!("recorded status {status}")))?,
                body: row.text("body")?,
            },
        }))
    }

    fn record(&self, change: &KeyedChange, answer: &StockAnswer) -> Result<bool, StoreError> {
        // A concurrent request with the same key waits here for the first one's commit,
        // then inserts nothing.
        let inserted = self.0.execute(
            "INSERT INTO stock_operations \
             (idempotency_key, operation, product_id, quantity, status, body) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (idempotency_key, operation) DO NOTHING",
            &[
                Value::Text(change.key.clone()),
                Value::Text(change.operation.as_str().into()),
                Value::Int(change.product_id),
                Value::Int(change.quantity),
                Value::Int(i64::from(answer.status)),
                Value::Text(answer.body.clone()),
            ],
        )?;
        Ok(inserted == 1)
    }

    fn commit(self) -> Result<(), StoreError> {
        Ok(self.0.commit()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(values: Vec<Vec<Value>>) -> Rows {
        Rows {
            columns: COLUMNS.split(", ").map(str::to_string).collect(),
            values,
        }
    }

    fn row(description: Value) -> Vec<Value> {
        vec![
            Value::Int(3),
            Value::Text("Widget".into()),
            description,
            Value::Int(1999),
            Value::Int(4),
            Value::Timestamp("2026-11-25T10:00:00.123456Z".into()),
            Value::Timestamp("2026-11-25T10:00:01Z".into()),
        ]
    }

    #[test]
    fn reads_a_product_row() {
        let product = one(&rows_of(vec![row(Value::Null)])).unwrap().unwrap();
        assert_eq!(
            product,
            Product {
                id: 3,
                name: "Widget".into(),
                description: None,
                price_cents: 1999,
                quantity: 4,
                created_at: "2026-11-25T10:00:00.123456Z".into(),
                updated_at: "2026-11-25T10:00:01Z".into(),
            }
        );
        let described = one(&rows_of(vec![row(Value::Text("d".into()))]))
            .unwrap()
            .unwrap();
        assert_eq!(described.description.as_deref(), Some("d"));
        assert_eq!(one(&rows_of(Vec::new())).unwrap(), None);
    }

    #[test]
    fn a_wrong_row_shape_is_internal() {
        let mut bad = row(Value::Null);
        bad[3] = Value::Text("19.99".into());
        assert!(matches!(
            one(&rows_of(vec![bad])),
            Err(StoreError::Internal(_))
        ));
    }

    #[test]
    fn update_statement_sets_only_present_fields() {
        let (sql, params) = update_statement(
            9,
            &ProductUpdate {
                name: Some("N".into()),
                description: Some(None),
                price_cents: None,
                quantity: Some(2),
            },
        );
        assert_eq!(
            sql,
            format!(
                "UPDATE products SET name = $1, description = $2, quantity = $3, \
                 updated_at = now() WHERE id = $4 RETURNING {COLUMNS}"
            )
        );
        assert_eq!(params.len(), 4);
        assert!(matches!(&params[0], Value::Text(name) if name == "N"));
        assert!(matches!(params[1], Value::Null));
        assert!(matches!(params[2], Value::Int(2)));
        assert!(matches!(params[3], Value::Int(9)));

        let (sql, params) = update_statement(
            1,
            &ProductUpdate {
                price_cents: Some(250),
                ..Default::default()
            },
        );
        assert_eq!(
            sql,
            format!(
                "UPDATE products SET price_cents = $1, updated_at = now() WHERE id = $2 RETURNING {COLUMNS}"
            )
        );
        assert!(matches!(params[..], [Value::Int(250), Value::Int(1)]));
    }
}
