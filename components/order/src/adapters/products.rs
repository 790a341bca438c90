//! The product service's REST API, reached through the outgoing-http capability.
//!
//! `POST {product_service_url}/products/{id}/reserve` and `.../release` with
//! `{"quantity": n}`, the change's `Idempotency-Key` and the `authorization` header of the
//! caller it is made for (the product service authenticates these routes itself). The mapping of its answers to domain errors is
//! pure ([`reserve_outcome`], [`release_outcome`]) and unit-tested.

use crate::model::StockChange;
use crate::ports::{ProductService, ProductServiceError, Released, ReservedProduct};
use platform_guest::http::Method;
use platform_guest::money;
use platform_guest::outgoing_http::{self, OutgoingRequest};
use serde_json::{json, Value};

/// Give up on the product service after this long, so that even a reservation followed
/// by a release stays within the host's request timeout; a change whose answer did not
/// come in time is settled later under the same key.
/// (config `product_timeout_ms`).
pub const DEFAULT_PRODUCT_TIMEOUT_MS: u32 = 5_000;

/// Maps the product service's answer to `POST /products/{id}/reserve`.
pub fn reserve_outcome(status: u16, body: &[u8]) -> Result<ReservedProduct, ProductServiceError> {
    match status {
        200..=299 => product_from_body(body).map_err(|cause| {
            ProductServiceError::InvalidAnswer(format!("reserve answered {status}: {cause}"))
        }),
        404 => Err(ProductServiceError::NotFound),
        409 => Err(ProductServiceError::InsufficientStock),
        401 => Err(ProductServiceError::Unauthorized),
        _ => Err(ProductServiceError::Unavailable(format!(
            "reserve answered {status}: {}",
            excerpt(body)
        ))),
    }
}

/// Maps the product service's answer to `POST /products/{id}/release`.
pub fn release_outcome(status: u16, body: &[u8]) -> Result<Released, ProductServiceError> {
    match status {
        200..=299 => Ok(Released::Released),
        404 => Ok(Released::ProductGone),
        409 => Ok(Released::NothingReserved),
        401 => Err(ProductServiceError::Unauthorized),
        _ => Err(ProductServiceError::Unavailable(format!(
            "release answered {status}: {}",
            excerpt(body)
        ))),
    }
}

/// Reads `name` and `price` (a JSON number, or a numeric string) from a product body.
fn product_from_body(body: &[u8]) -> Result<ReservedProduct, String> {
    let product: Value =
        serde_json::from_slice(body).map_err(|error| format!("not JSON ({error})"))?;
    let name = product
        .get("name")
        .and_then(Value::as_str)
        .ok_or("no string `name`")?
        .to_string();
    let price = product.get("price").ok_or("no `price`")?;
    let price_cents = money::parse_price(price, "price")
        .map_err(|error| format!("unusable `price` {price}: {}", error.msg))?;
    Ok(ReservedProduct { name, price_cents })
}

/// The start of a body, for log lines.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.into_owned(),
    }
}

/// The product service client used by the component.
pub struct HttpProductClient {
    /// `product_service_url` from the service's config; `None` when it is not set.
    base_url: Option<String>,
    timeout_ms: u32,
}

impl HttpProductClient {
    pub fn new(base_url: Option<String>, timeout_ms: u32) -> Self {
        HttpProductClient {
            base_url,
            timeout_ms,
        }
    }

    fn post(&self, change: &StockChange) -> Result<(u16, Vec<u8>), ProductServiceError> {
        let base = self.base_url.as_deref().ok_or_else(|| {
            ProductServiceError::Unavailable("config key `product_service_url` is not set".into())
        })?;
        let url = product_url(base, change.product_id, change.action.as_str());
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("accept".to_string(), "application/json".to_string()),
            ("idempotency-key".to_string(), change.key.clone()),
        ];
        if let Some(authorization) = &change.authorization {
            headers.push(("authorization".to_string(), authorization.clone()));
        }
        let request = OutgoingRequest {
            method: Method::Post,
            url: url.clone(),
            headers,
            body: json!({ "quantity": change.quantity })
                .to_string()
                .into_bytes(),
            timeout_ms: Some(self.timeout_ms),
        };
        outgoing_http::send(&request)
            .map(|response| (response.status, response.body))
            .map_err(|error| ProductServiceError::Unavailable(format!("POST {url}: {error:?}")))
    }
}

/// `{base}/products/{id}/{action}`, whether or not `base` ends with a slash.
pub fn product_url(base: &str, product_id: i64, action: &str) -> String {
    format!(
        "{}/products/{product_id}/{action}",
        base.trim_end_matches('/')
    )
}

impl ProductService for HttpProductClient {
    fn reserve(&self, change: &StockChange) -> Result<ReservedProduct, ProductServiceError> {
        let (status, body) = self.post(change)?;
        reserve_outcome(status, &body)
    }

    fn release(&self, change: &StockChange) -> Result<Released, ProductServiceError> {
        let (status, body) = self.post(change)?;
        release_outcome(status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(price: Value) -> Vec<u8> {
        json!({"id": 7, "name": "Widget", "description": null, "price": price, "quantity": 4,
               "created_at": "2026-11-25T10:00:00Z", "updated_at": "2026-11-25T10:00:00Z"})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_reservation_yields_name_and_price_in_cents() {
        assert_eq!(
            reserve_outcome(200, &product(json!(19.99))),
            Ok(ReservedProduct {
                name: "Widget".into(),
                price_cents: 1999
            })
        );
        // The FastAPI design sent prices as strings; they are read exactly too.
        assert_eq!(
            reserve_outcome(200, &product(json!("0.10")))
                .unwrap()
                .price_cents,
            10
        );
        assert_eq!(
            reserve_outcome(200, &product(json!(20)))
                .unwrap()
                .price_cents,
            2000
        );
    }

    #[test]
    fn unreadable_products_are_invalid_answers() {
        for body in [
            b"not json".to_vec(),
            br#"{"price": 1.5}"#.to_vec(),
            br#"{"name": "x"}"#.to_vec(),
            product(json!(-1)),
            product(json!(1.234)),
        ] {
            assert!(matches!(
                reserve_outcome(200, &body),
                Err(ProductServiceError::InvalidAnswer(_))
            ));
        }
    }

    #[test]
    fn reserve_statuses_map_to_domain_errors() {
        let detail = br#"{"detail": "x"}"#;
        assert_eq!(
            reserve_outcome(404, detail),
            Err(ProductServiceError::NotFound)
        );
        assert_eq!(
            reserve_outcome(409, detail),
            Err(ProductServiceError::InsufficientStock)
        );
        assert_eq!(
            reserve_outcome(401, detail),
            Err(ProductServiceError::Unauthorized)
        );
        for status in [400, 403, 405, 422, 500, 502, 503] {
            assert!(matches!(
                reserve_outcome(status, detail),
                Err(ProductServiceError::Unavailable(cause)) if cause.contains(&status.to_string())
            ));
        }
    }

    #[test]
    fn release_statuses_map_to_outcomes() {
        assert_eq!(
            release_outcome(200, &product(json!(1))),
            Ok(Released::Released)
        );
        assert_eq!(release_outcome(404, b""), Ok(Released::ProductGone));
        assert_eq!(release_outcome(409, b""), Ok(Released::NothingReserved));
        assert_eq!(
            release_outcome(401, b""),
            Err(ProductServiceError::Unauthorized)
        );
        assert!(matches!(
            release_outcome(422, b"{}"),
            Err(ProductServiceError::Unavailable(_))
        ));
        assert!(matches!(
            release_outcome(503, b""),
            Err(ProductServiceError::Unavailable(_))
        ));
    }

    #[test]
    fn urls_and_log_excerpts() {
        assert_eq!(
            product_url("http://127.0.0.1:8002/", 5, "reserve"),
            "http://127.0.0.1:8002/products/5/reserve"
        );
        assert_eq!(
            product_url("http://127.0.0.1:8002", 5, "release"),
            "http://127.0.0.1:8002/products/5/release"
        );
        assert_eq!(excerpt("é".repeat(300).as_bytes()).chars().count(), 203);
        assert_eq!(excerpt(b"short"), "short");
    }
}
