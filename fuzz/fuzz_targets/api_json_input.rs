//! The api's reading of a start request's body: content type, JSON
//! (`JsonInput`, `parse_json`), then every built-in kind's input
//! validation. Never a panic; refusals are 400/413/415 problems; every
//! validation error points (JSON Pointer) at a place that exists in the
//! input; an accepted number is never an integral float (the worker
//! deserialises integers).
//!
//! Input: `content type LF body`; a leading LF means no `Content-Type`.
#![no_main]

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{HeaderValue, Request, header};
use libfuzzer_sys::fuzz_target;
use longrun_api::Catalog;
use longrun_api::extract::{JsonInput, parse_json};
use longrun_shared::kinds;
use longrun_shared::problem::Code;
use serde_json::Value;

static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::builtin);

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
}

fn check_kinds(value: &Value) {
    for spec in kinds::builtin() {
        let kind = CATALOG.get(&spec.kind).expect("built in");
        for error in kind.check(value) {
            assert!(
                value.pointer(&error.path).is_some(),
                "{}: error path {:?} is not in the input {value}",
                spec.kind,
                error.path
            );
            assert!(!error.message.is_empty());
        }
    }
}

fn assert_no_integral_floats(value: &Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.5);
            assert!(
                f.fract() != 0.0 || f.abs() >= 9.3e18,
                "integral float {f} left as a float"
            );
        }
        Value::Array(items) => items.iter().for_each(assert_no_integral_floats),
        Value::Object(map) => map.values().for_each(assert_no_integral_floats),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(0) => (None, &data[1..]),
        Some(end) => (Some(&data[..end]), &data[end + 1..]),
        None => (None, data),
    };
    if let Ok(value) = parse_json(body) {
        assert_no_integral_floats(&value);
        check_kinds(&value);
    }
    let mut request = Request::post("/v1/demo/sleep")
        .body(Body::from(body.to_vec()))
        .expect("request");
    if let Some(media) = content_type
        && let Ok(value) = HeaderValue::from_bytes(media)
    {
        request.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    let outcome = RUNTIME.with(|runtime| runtime.block_on(JsonInput::from_request(request, &())));
    match outcome {
        Ok(JsonInput(value)) => check_kinds(&value),
        Err(err) => assert!(
            matches!(
                err.problem.code,
                Code::InvalidJson
                    | Code::BadRequest
                    | Code::PayloadTooLarge
                    | Code::UnsupportedMediaType
            ),
            "unexpected refusal {:?}",
            err.problem
        ),
    }
});
