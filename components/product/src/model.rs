//! Domain types of the product service: the product itself, the validated inputs of the
//! write routes, and the JSON shapes (wire and cache).

use platform_guest::errors::{fields, FieldError, Validation};
use platform_guest::money;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Longest accepted product name, in characters.
pub const NAME_MAX_CHARS: usize = 255;
/// Longest accepted description, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 1000;

/// A product as stored. Money is integer cents; timestamps are the RFC 3339 UTC strings
/// the database returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub price_cents: i64,
    pub quantity: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// The product's JSON representation, fields in the contract's order:
/// `{"id", "name", "description", "price", "quantity", "created_at", "updated_at"}`.
#[derive(Debug, Serialize)]
pub struct ProductBody<'a> {
    pub id: i64,
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub price: Value,
    pub quantity: i64,
    pub created_at: &'a str,
    pub updated_at: &'a str,
}

impl Product {
    /// The wire shape (also what the cache holds).
    pub fn body(&self) -> ProductBody<'_> {
        ProductBody {
            id: self.id,
            name: &self.name,
            description: self.description.as_deref(),
            price: money::to_json(self.price_cents),
            quantity: self.quantity,
            created_at: &self.created_at,
            updated_at: &self.updated_at,
        }
    }

    /// The wire shape as a JSON value.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.body()).expect("a product always serialises")
    }

    /// The bytes stored in the cache under `product:{id}`: the product's JSON.
    pub fn to_cache_value(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body()).expect("a product always serialises")
    }

    /// Reads a cached value back; `None` for anything that is not a well-formed product
    /// (the caller then treats the entry as a miss).
    pub fn from_cache_value(bytes: &[u8]) -> Option<Product> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        Product::from_json(&value)
    }

    /// Parses the wire shape strictly: every field present with the right type.
    pub fn from_json(value: &Value) -> Option<Product> {
        let object = value.as_object()?;
        let text = |name: &str| object.get(name)?.as_str().map(str::to_string);
        let id = object.get("id")?.as_i64().filter(|id| *id > 0)?;
        let description = match object.get("description")? {
            Value::Null => None,
            Value::String(text) => Some(text.clone()),
            _ => return None,
        };
        let price = object.get("price")?;
        if !price.is_number() {
            return None;
        }
        Some(Product {
            id,
            name: text("name")?,
            description,
            price_cents: money::parse_price(price, "price").ok()?,
            quantity: object.get("quantity")?.as_i64().filter(|q| *q >= 0)?,
            created_at: text("created_at")?,
            updated_at: text("updated_at")?,
        })
    }
}

/// One product's JSON, exactly as the cache holds it and the wire carries it: a cache hit
/// is checked and served as these bytes, never parsed into a [`Product`] and written again.
/// Always a well-formed product: it is made from one, or checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductJson(Vec<u8>);

impl ProductJson {
    pub fn of(product: &Product) -> ProductJson {
        ProductJson(product.to_cache_value())
    }

    /// A cached value, if it is product `id` in the wire shape, as strictly as
    /// [`Product::from_json`] reads it and with no other field (it is served as it is).
    pub fn cached(bytes: Vec<u8>, id: i64) -> Option<ProductJson> {
        let shape: WireShape<'_> = serde_json::from_slice(&bytes).ok()?;
        shape.is_product(id).then_some(ProductJson(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The product it holds (tests read it back).
    #[cfg(test)]
    pub fn product(&self) -> Product {
        Product::from_cache_value(&self.0).expect("a ProductJson is always a product")
    }
}

/// The wire shape, borrowed from the bytes: checking it builds no JSON tree.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireShape<'a> {
    id: i64,
    #[serde(borrow)]
    #[allow(dead_code)] // any string will do: it is only checked to be one
    name: Cow<'a, str>,
    /// `Some(None)` for `null`; a missing field is `None` and refused.
    #[serde(borrow, default, deserialize_with = "present")]
    description: Option<Option<Cow<'a, str>>>,
    price: serde_json::Number,
    quantity: i64,
    #[serde(borrow)]
    #[allow(dead_code)]
    created_at: Cow<'a, str>,
    #[serde(borrow)]
    #[allow(dead_code)]
    updated_at: Cow<'a, str>,
}

impl WireShape<'_> {
    fn is_product(&self, id: i64) -> bool {
        self.id == id
            && id > 0
            && self.description.is_some()
            && self.quantity >= 0
            && money::parse_price(&Value::Number(self.price.clone()), "price").is_ok()
    }
}

/// A field that must be present, even when it is `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A validated `POST /products` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: String,
    pub description: Option<String>,
    pub price_cents: i64,
    pub quantity: i64,
}

impl NewProduct {
    /// Validates `{"name", "description"?, "price", "quantity"}`, reporting every failing
    /// field at once in declaration order, as pydantic does. Unknown fields are ignored.
    pub fn from_json(body: &Map<String, Value>) -> Result<NewProduct, Vec<FieldError>> {
        let mut validation = Validation::new();
        let name = validation.check(fields::string(body, "name", 1, NAME_MAX_CHARS));
        let description = validation.check(match body.get("description") {
            None => Ok(None),
            Some(value) => description(value),
        });
        let price = validation.check(match body.get("price") {
            Some(value) => money::parse_price(value, "price"),
            None => Err(FieldError::missing(
                &["body", "price"],
                Value::Object(body.clone()),
            )),
        });
        let quantity = validation.check(fields::integer(body, "quantity", 0));
        validation.finish()?;
        match (name, description, price, quantity) {
            (Some(name), Some(description), Some(price_cents), Some(quantity)) => Ok(NewProduct {
                name,
                description,
                price_cents,
                quantity,
            }),
            _ => unreachable!("validation passed, so every field is present"),
        }
    }
}

/// A validated `PUT /products/{product_id}` body: any subset of the create fields.
///
/// `description` is doubly optional: `None` leaves it unchanged, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductUpdate {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub price_cents: Option<i64>,
    pub quantity: Option<i64>,
}

impl ProductUpdate {
    /// Validates the present fields with the create rules. `null` is only accepted for
    /// `description` (it clears it); `null` for name, price or quantity is a 422.
    pub fn from_json(body: &Map<String, Value>) -> Result<ProductUpdate, Vec<FieldError>> {
        let mut validation = Validation::new();
        let mut update = ProductUpdate::default();
        if let Some(value) = body.get("name") {
            update.name = validation.check(fields::string_value(value, "name", 1, NAME_MAX_CHARS));
        }
        if let Some(value) = body.get("description") {
            update.description = validation.check(description(value));
        }
        if let Some(value) = body.get("price") {
            update.price_cents = validation.check(money::parse_price(value, "price"));
        }
        if let Some(value) = body.get("quantity") {
            update.quantity = validation.check(fields::integer_value(value, "quantity", 0));
        }
        validation.finish().map(|()| update)
    }

    /// True when the body named no field: nothing to write.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.description.is_none()
            && self.price_cents.is_none()
            && self.quantity.is_none()
    }
}

/// `null` or a string of at most 1000 characters.
fn description(value: &Value) -> Result<Option<String>, FieldError> {
    match value {
        Value::Null => Ok(None),
        other => fields::string_value(other, "description", 0, DESCRIPTION_MAX_CHARS).map(Some),
    }
}

/// A validated reserve / release body: `{"quantity"}`, an integer >= 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockChange {
    pub quantity: i64,
}

impl StockChange {
    pub fn from_json(body: &Map<String, Value>) -> Result<StockChange, Vec<FieldError>> {
        fields::integer(body, "quantity", 1)
            .map(|quantity| StockChange { quantity })
            .map_err(|error| vec![error])
    }
}

/// The longest `Idempotency-Key` accepted, in bytes.
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 255;

/// A reserve or release sent with an `Idempotency-Key`: applied once per key and
/// operation; a repeat gets the first answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedChange {
    pub key: String,
    pub operation: StockOperation,
    pub product_id: i64,
    pub quantity: i64,
}

/// The two stock operations a key can be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockOperation {
    Reserve,
    Release,
}

impl StockOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            StockOperation::Reserve => "reserve",
            StockOperation::Release => "release",
        }
    }
}

/// Validates an `Idempotency-Key` header: 1..=255 visible ASCII characters, so that it
/// can be logged and stored as is.
pub fn idempotency_key(raw: &str) -> Result<String, FieldError> {
    let fits = !raw.is_empty()
        && raw.len() <= IDEMPOTENCY_KEY_MAX_BYTES
        && raw.bytes().all(|byte| byte.is_ascii_graphic());
    if fits {
        Ok(raw.to_string())
    } else {
        Err(FieldError::new(
            "string_pattern_mismatch",
            &["header", "idempotency-key"],
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
            Value::from(raw),
        ))
    }
}

/// An answer to a keyed stock change as it is recorded and replayed: status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockAnswer {
    pub status: u16,
    pub body: String,
}

impl StockAnswer {
    /// 200 with the product.
    pub fn product(product: &Product) -> StockAnswer {
        StockAnswer {
            status: 200,
            body: product.to_json().to_string(),
        }
    }

    /// An error status with FastAPI's `{"detail": ...}`.
    pub fn detail(status: u16, message: &str) -> StockAnswer {
        StockAnswer {
            status,
            body: platform_guest::errors::detail_body(message).to_string(),
        }
    }

    pub fn is_success(&self) -> bool {
        self.status == 200
    }
}

/// The cache key of one product, as the contract names it.
pub fn cache_key(id: i64) -> String {
    format!("product:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().expect("test bodies are objects").clone()
    }

    fn kinds(errors: &[FieldError]) -> Vec<(&'static str, Vec<Value>)> {
        errors.iter().map(|e| (e.kind, e.loc.clone())).collect()
    }

    fn loc(field: &str) -> Vec<Value> {
        vec![json!("body"), json!(field)]
    }

    fn sample() -> Product {
        Product {
            id: 7,
            name: "Widget".into(),
            description: Some("A useful widget".into()),
            price_cents: 1999,
            quantity: 10,
            created_at: "2026-11-25T10:00:00.123456Z".into(),
            updated_at: "2026-11-25T10:05:00Z".into(),
        }
    }

    // ---- create ----

    #[test]
    fn create_accepts_a_full_body() {
        let body =
            object(json!({"name": "Widget", "description": "d", "price": 19.99, "quantity": 3}));
        assert_eq!(
            NewProduct::from_json(&body),
            Ok(NewProduct {
                name: "Widget".into(),
                description: Some("d".into()),
                price_cents: 1999,
                quantity: 3,
            })
        );
    }

    #[test]
    fn create_description_is_optional_and_nullable() {
        let absent = object(json!({"name": "W", "price": "5", "quantity": 0}));
        assert_eq!(NewProduct::from_json(&absent).unwrap().description, None);
        let null = object(json!({"name": "W", "description": null, "price": 5, "quantity": 0}));
        assert_eq!(NewProduct::from_json(&null).unwrap().description, None);
        let empty = object(json!({"name": "W", "description": "", "price": 5, "quantity": 0}));
        assert_eq!(
            NewProduct::from_json(&empty).unwrap().description,
            Some(String::new())
        );
    }

    #[test]
    fn create_accepts_numeric_strings_and_lax_integers() {
        let body = object(json!({"name": "W", "price": "19.90", "quantity": "4"}));
        let product = NewProduct::from_json(&body).unwrap();
        assert_eq!((product.price_cents, product.quantity), (1990, 4));
        let body = object(json!({"name": "W", "price": 20, "quantity": 4.0}));
        let product = NewProduct::from_json(&body).unwrap();
        assert_eq!((product.price_cents, product.quantity), (2000, 4));
    }

    #[test]
    fn create_reports_every_missing_field_at_once() {
        let errors = NewProduct::from_json(&object(json!({}))).unwrap_err();
        assert_eq!(
            kinds(&errors),
            vec![
                ("missing", loc("name")),
                ("missing", loc("price")),
                ("missing", loc("quantity")),
            ]
        );
        assert_eq!(errors[0].msg, "Field required");
        assert_eq!(errors[1].input, json!({}));
    }

    #[test]
    fn create_enforces_every_rule() {
        let body = object(json!({
            "name": "",
            "description": "x".repeat(1001),
            "price": 19.999,
            "quantity": -1,
        }));
        let errors = NewProduct::from_json(&body).unwrap_err();
        assert_eq!(
            kinds(&errors),
            vec![
                ("string_too_short", loc("name")),
                ("string_too_long", loc("description")),
                ("decimal_max_places", loc("price")),
                ("greater_than_equal", loc("quantity")),
            ]
        );
    }

    #[test]
    fn create_limits_and_types() {
        let check = |body: Value| NewProduct::from_json(&object(body)).map_err(|e| kinds(&e));
        // Boundaries that pass.
        let ok = json!({"name": "n".repeat(255), "description": "d".repeat(1000), "price": 99999999.99, "quantity": 0});
        assert!(check(ok).is_ok());
        let ok = json!({"name": "é", "price": 0.01, "quantity": 0});
        assert!(check(ok).is_ok());
        // Boundaries that fail.
        assert_eq!(
            check(json!({"name": "n".repeat(256), "price": 100000000, "quantity": 1})).unwrap_err(),
            vec![
                ("string_too_long", loc("name")),
                ("less_than_equal", loc("price"))
            ]
        );
        assert_eq!(
            check(json!({"name": "n", "price": 0, "quantity": 1})).unwrap_err(),
            vec![("greater_than", loc("price"))]
        );
        assert_eq!(
            check(json!({"name": "n", "price": "-1.00", "quantity": 1})).unwrap_err(),
            vec![("greater_than", loc("price"))]
        );
        // Wrong types.
        assert_eq!(
            check(json!({"name": 5, "description": 3, "price": "abc", "quantity": 1.5}))
                .unwrap_err(),
            vec![
                ("string_type", loc("name")),
                ("string_type", loc("description")),
                ("decimal_parsing", loc("price")),
                ("int_from_float", loc("quantity")),
            ]
        );
        assert_eq!(
            check(json!({"name": null, "price": null, "quantity": null})).unwrap_err(),
            vec![
                ("string_type", loc("name")),
                ("decimal_type", loc("price")),
                ("int_type", loc("quantity")),
            ]
        );
        assert_eq!(
            check(json!({"name": "n", "price": 1, "quantity": "many"})).unwrap_err(),
            vec![("int_parsing", loc("quantity"))]
        );
    }

    #[test]
    fn create_ignores_unknown_fields() {
        let body = object(json!({"name": "W", "price": 1, "quantity": 1, "id": 99, "extra": true}));
        assert!(NewProduct::from_json(&body).is_ok());
    }

    // ---- update ----

    #[test]
    fn update_accepts_any_subset() {
        assert_eq!(
            ProductUpdate::from_json(&object(json!({}))),
            Ok(ProductUpdate::default())
        );
        assert!(ProductUpdate::from_json(&object(json!({})))
            .unwrap()
            .is_empty());
        assert_eq!(
            ProductUpdate::from_json(&object(json!({"price": "2.5"}))),
            Ok(ProductUpdate {
                price_cents: Some(250),
                ..Default::default()
            })
        );
        assert_eq!(
            ProductUpdate::from_json(&object(json!({"quantity": 0, "name": "New"}))),
            Ok(ProductUpdate {
                name: Some("New".into()),
                quantity: Some(0),
                ..Default::default()
            })
        );
        let all = ProductUpdate::from_json(&object(
            json!({"name": "N", "description": "D", "price": 1, "quantity": 2}),
        ))
        .unwrap();
        assert_eq!(
            all,
            ProductUpdate {
                name: Some("N".into()),
                description: Some(Some("D".into())),
                price_cents: Some(100),
                quantity: Some(2),
            }
        );
        assert!(!all.is_empty());
    }

    #[test]
    fn update_description_null_clears_it_and_absent_leaves_it() {
        let clear = ProductUpdate::from_json(&object(json!({"description": null}))).unwrap();
        assert_eq!(clear.description, Some(None));
        assert!(!clear.is_empty());
        let keep = ProductUpdate::from_json(&object(json!({"name": "x"}))).unwrap();
        assert_eq!(keep.description, None);
    }

    #[test]
    fn update_rejects_null_for_required_fields() {
        let errors = ProductUpdate::from_json(&object(
            json!({"name": null, "price": null, "quantity": null}),
        ))
        .unwrap_err();
        assert_eq!(
            kinds(&errors),
            vec![
                ("string_type", loc("name")),
                ("decimal_type", loc("price")),
                ("int_type", loc("quantity")),
            ]
        );
    }

    #[test]
    fn update_validates_present_fields_with_create_rules_and_reports_all() {
        let errors = ProductUpdate::from_json(&object(json!({
            "name": "",
            "description": "x".repeat(1001),
            "price": "0.001",
            "quantity": -3,
        })))
        .unwrap_err();
        assert_eq!(
            kinds(&errors),
            vec![
                ("string_too_short", loc("name")),
                ("string_too_long", loc("description")),
                ("decimal_max_places", loc("price")),
                ("greater_than_equal", loc("quantity")),
            ]
        );
        let errors =
            ProductUpdate::from_json(&object(json!({"name": "n".repeat(256), "price": 0})))
                .unwrap_err();
        assert_eq!(
            kinds(&errors),
            vec![
                ("string_too_long", loc("name")),
                ("greater_than", loc("price"))
            ]
        );
    }

    // ---- reserve / release ----

    #[test]
    fn stock_change_quantity_is_an_integer_of_at_least_one() {
        assert_eq!(
            StockChange::from_json(&object(json!({"quantity": 3}))),
            Ok(StockChange { quantity: 3 })
        );
        let kind = |body: Value| StockChange::from_json(&object(body)).unwrap_err()[0].kind;
        assert_eq!(kind(json!({})), "missing");
        assert_eq!(kind(json!({"quantity": 0})), "greater_than");
        assert_eq!(kind(json!({"quantity": -1})), "greater_than");
        assert_eq!(kind(json!({"quantity": 1.5})), "int_from_float");
        assert_eq!(kind(json!({"quantity": null})), "int_type");
        let error = &StockChange::from_json(&object(json!({"quantity": 0}))).unwrap_err()[0];
        assert_eq!(error.msg, "Input should be greater than 0");
        assert_eq!(error.loc, loc("quantity"));
    }

    // ---- JSON shapes ----

    #[test]
    fn product_json_shape() {
        assert_eq!(
            sample().to_json(),
            json!({
                "id": 7,
                "name": "Widget",
                "description": "A useful widget",
                "price": 19.99,
                "quantity": 10,
                "created_at": "2026-11-25T10:00:00.123456Z",
                "updated_at": "2026-11-25T10:05:00Z",
            })
        );
        let without = Product {
            description: None,
            price_cents: 2000,
            ..sample()
        };
        assert_eq!(without.to_json()["description"], Value::Null);
        assert_eq!(without.to_json()["price"].to_string(), "20.0");
    }

    #[test]
    fn product_json_keeps_the_contract_field_order() {
        let text = String::from_utf8(sample().to_cache_value()).unwrap();
        assert_eq!(
            text,
            r#"{"id":7,"name":"Widget","description":"A useful widget","price":19.99,"quantity":10,"created_at":"2026-11-25T10:00:00.123456Z","updated_at":"2026-11-25T10:05:00Z"}"#
        );
    }

    #[test]
    fn cache_value_round_trips() {
        for product in [
            sample(),
            Product {
                description: None,
                ..sample()
            },
            Product {
                price_cents: 1,
                quantity: 0,
                ..sample()
            },
            Product {
                price_cents: money::MAX_CENTS,
                ..sample()
            },
            Product {
                price_cents: 30,
                ..sample()
            },
            Product {
                price_cents: 2000,
                name: "ünïcødé \"quoted\"".into(),
                ..sample()
            },
        ] {
            assert_eq!(
                Product::from_cache_value(&product.to_cache_value()),
                Some(product.clone())
            );
            let served = ProductJson::cached(product.to_cache_value(), product.id)
                .expect("a product's own JSON is served from the cache");
            assert_eq!(served.as_bytes(), product.to_cache_value().as_slice());
            assert_eq!(served.product(), product);
        }
    }

    #[test]
    fn malformed_cache_values_are_rejected() {
        let good = sample().to_json();
        let mut broken = Vec::new();
        for field in [
            "id",
            "name",
            "description",
            "price",
            "quantity",
            "created_at",
            "updated_at",
        ] {
            let mut value = good.clone();
            value.as_object_mut().unwrap().remove(field);
            broken.push(value);
        }
        let mut wrong_price = good.clone();
        wrong_price["price"] = json!("19.99");
        broken.push(wrong_price);
        let mut negative_quantity = good.clone();
        negative_quantity["quantity"] = json!(-1);
        broken.push(negative_quantity);
        let mut number_description = good.clone();
        number_description["description"] = json!(5);
        broken.push(number_description);
        for value in &broken {
            assert_eq!(Product::from_json(value), None, "{value}");
        }
        for value in &broken {
            let bytes = serde_json::to_vec(value).unwrap();
            assert_eq!(ProductJson::cached(bytes, 7), None, "{value}");
        }
        let mut extra = good.clone();
        extra["secret"] = json!("not for the wire");
        assert_eq!(
            ProductJson::cached(serde_json::to_vec(&extra).unwrap(), 7),
            None
        );
        let mut bad_cents = good.clone();
        bad_cents["price"] = json!(19.999);
        assert_eq!(
            ProductJson::cached(serde_json::to_vec(&bad_cents).unwrap(), 7),
            None
        );
        assert_eq!(ProductJson::cached(sample().to_cache_value(), 8), None);
        assert_eq!(ProductJson::cached(b"not json".to_vec(), 7), None);
        assert_eq!(Product::from_cache_value(b"not json"), None);
        assert_eq!(Product::from_cache_value(b""), None);
        assert_eq!(Product::from_cache_value(b"[1,2]"), None);
    }

    #[test]
    fn cache_key_is_the_contract_key() {
        assert_eq!(cache_key(42), "product:42");
    }
}
