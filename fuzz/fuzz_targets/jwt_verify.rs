//! `Verifier::verify` and `verify_header` on arbitrary text: never a panic,
//! and never a principal for a token this secret did not sign as HS256.
#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use longrun_shared::auth::{Principal, Verifier};
use longrun_shared::config::JwtConfig;
use serde_json::Value;

const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    Verifier::new(&JwtConfig {
        secret: SECRET.into(),
        issuer: None,
        audience: None,
        leeway_s: 5,
    })
});

/// What an accepted token must be: three segments, an HS256 header, a
/// signature of this secret over the first two, and sane claims.
fn assert_genuine(token: &str, principal: &Principal) {
    let token = token.trim();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(
        parts.len(),
        3,
        "accepted a token of {} segments",
        parts.len()
    );
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(parts[0])
            .expect("header is base64url"),
    )
    .expect("header is JSON");
    assert_eq!(header["alg"], "HS256", "accepted alg {}", header["alg"]);
    let message = format!("{}.{}", parts[0], parts[1]);
    let expected = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    )
    .expect("signs");
    assert_eq!(
        URL_SAFE_NO_PAD.decode(parts[2]).ok(),
        URL_SAFE_NO_PAD.decode(expected).ok(),
        "accepted a signature this secret did not make"
    );
    assert!(!principal.owner.is_empty() && principal.owner.len() <= 256);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(principal) = VERIFIER.verify(text) {
        assert_genuine(text, &principal);
    }
    if let Ok(principal) = VERIFIER.verify_header(text) {
        let token = text.trim().split_once(' ').map_or("", |(_, token)| token);
        assert_genuine(token, &principal);
    }
});
