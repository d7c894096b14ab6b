//! What makes two starts "the same request" for `Idempotency-Key`: the
//! kind, the input and the options, hashed into a fingerprint stored with
//! the key. A repeat with the same fingerprint gets the first operation
//! back (200); a different request reusing the key is refused with 422
//! `idempotency_key_reused` (as the IETF Idempotency-Key draft and Stripe
//! do), so a client bug never silently returns an unrelated operation.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// The key of a request, if it sent one: 1 to 255 visible ASCII characters.
pub fn key_of(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= MAX_KEY_LEN)
        .filter(|key| key.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    Ok(Some(key.to_owned()))
}

/// The fingerprint of a start: SHA-256 (hex) of the kind, the input and
/// the options, each as canonical JSON (object keys sorted).
pub fn fingerprint(kind: &str, input: &Value, options: &impl Serialize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical(input).as_bytes());
    hasher.update(b"\n");
    let options = serde_json::to_value(options).unwrap_or(Value::Null);
    hasher.update(canonical(&options).as_bytes());
    hex::encode(hasher.finalize())
}

/// JSON with every object's keys in sorted order, whatever order the
/// client sent them in.
fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(key, value)| (key.clone(), sorted(value)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter_but_values_do() {
        let options = json!({"max_attempts": null});
        let a = fingerprint(
            "demo.sleep",
            &json!({"steps": 2, "duration_ms": 5}),
            &options,
        );
        let b = fingerprint(
            "demo.sleep",
            &json!({"duration_ms": 5, "steps": 2}),
            &options,
        );
        let c = fingerprint(
            "demo.sleep",
            &json!({"duration_ms": 6, "steps": 2}),
            &options,
        );
        let d = fingerprint(
            "demo.fanout",
            &json!({"duration_ms": 5, "steps": 2}),
            &options,
        );
        let e = fingerprint(
            "demo.sleep",
            &json!({"steps": 2, "duration_ms": 5}),
            &json!({"max_attempts": 2}),
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        assert!(!a.contains(' '));
        for other in [c, d, e] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(key_of(&headers).ok(), Some(None));
        headers.insert("idempotency-key", "order-42".parse().expect("header"));
        assert_eq!(key_of(&headers).ok(), Some(Some("order-42".into())));
        headers.insert("idempotency-key", "has space".parse().expect("header"));
        assert!(key_of(&headers).is_err());
        headers.insert("idempotency-key", "x".repeat(256).parse().expect("header"));
        assert!(key_of(&headers).is_err());
    }
}
