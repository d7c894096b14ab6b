//! Tokens that carry a good HS256 signature of the configured secret over
//! an arbitrary header and arbitrary claims, so the fuzzer explores what
//! lies past the signature check: algorithm confusion, `kid`, `typ`,
//! claim types, time claims and `sub`. Whatever it accepts must satisfy
//! the contract: alg HS256, a string `sub` of 1–256 printable
//! characters, an integer `exp` not in the past, `nbf` (if any) not in
//! the future.
//!
//! Input: `header NUL claims NUL suffix` (the suffix goes after the
//! signature: extra segments, spaces); a leading `H:` sends the token as an
//! `Authorization: Bearer` value. In the header and claims, `@now`, `@past`
//! and `@future` stand for the current time, an hour ago and an hour ahead
//! (seconds since the epoch), so the corpus stays meaningful as the clock
//! moves.
#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use longrun_shared::auth::{Verifier, unix_now};
use longrun_shared::config::JwtConfig;
use serde::Deserialize;
use serde_json::Value;

/// The header fields an accepted token is checked for.
#[derive(Deserialize)]
struct SeenHeader {
    alg: String,
}

/// The claims an accepted token is checked for.
#[derive(Deserialize)]
struct SeenClaims {
    sub: Value,
    exp: Value,
    nbf: Option<Value>,
    roles: Option<Value>,
}

const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";
const LEEWAY_S: u64 = 5;

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    Verifier::new(&JwtConfig {
        secret: SECRET.into(),
        issuer: None,
        audience: None,
        leeway_s: LEEWAY_S,
    })
});

fn expand(text: &str, now: u64) -> String {
    text.replace("@now", &now.to_string())
        .replace("@past", &(now - 3600).to_string())
        .replace("@future", &(now + 3600).to_string())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (as_header, text) = match text.strip_prefix("H:") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut parts = text.splitn(3, '\0');
    let (header, claims) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let suffix = parts.next().unwrap_or("");
    let now = unix_now();
    let header = expand(header, now);
    let claims = expand(claims, now);
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.as_bytes()),
        URL_SAFE_NO_PAD.encode(claims.as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    )
    .expect("signs");
    let token = format!("{message}.{signature}{suffix}");
    let verdict = if as_header {
        VERIFIER.verify_header(&format!("Bearer {token}"))
    } else {
        VERIFIER.verify(&token)
    };
    let Ok(principal) = verdict else {
        return;
    };
    // Unknown header fields and claims are ignored (RFC 7519 §4), whatever
    // they hold — even numbers no JSON value can represent — so only the
    // fields that matter are read back.
    let header: SeenHeader = serde_json::from_str(&header).expect("an accepted header is JSON");
    assert_eq!(header.alg, "HS256", "accepted alg {}", header.alg);
    let claims: SeenClaims = serde_json::from_str(&claims).expect("accepted claims are JSON");
    let sub = claims.sub.as_str().expect("sub is a string");
    assert_eq!(principal.owner, sub);
    assert!(!sub.is_empty() && sub.len() <= 256 && !sub.chars().any(char::is_control));
    let exp = claims.exp.as_u64().expect("exp is an integer");
    assert!(
        exp.saturating_add(LEEWAY_S) >= now.saturating_sub(1),
        "accepted exp {exp} at {now}"
    );
    assert_eq!(principal.expires_at, exp.saturating_add(LEEWAY_S));
    if let Some(nbf) = claims.nbf {
        let nbf = nbf.as_u64().expect("nbf is an integer");
        assert!(nbf <= now + LEEWAY_S + 1, "accepted nbf {nbf} at {now}");
    }
    let roles = claims.roles.as_ref().and_then(Value::as_array);
    let admin = roles.is_some_and(|roles| roles.iter().any(|r| r == "admin"));
    assert_eq!(principal.admin, admin);
});
