//! What the CLI can tell about its token without the secret: the claims
//! it carries (read, not verified — the server does that), used to explain
//! a refusal ("the token for `dana` expired 3m ago") and by `longrun config`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use longrun_shared::auth::unix_now;
use serde::Deserialize;

/// The readable claims of a JWT.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenInfo {
    pub sub: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(rename = "exp")]
    pub expires_at: Option<u64>,
}

impl TokenInfo {
    /// The claims of `token`, or `None` when it is not a JWT.
    pub fn read(token: &str) -> Option<TokenInfo> {
        let payload = token.trim().split('.').nth(1)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|exp| exp <= unix_now())
    }

    /// How long ago it expired, rounded for a person (`3m`, `2h`).
    pub fn expired_for(&self) -> String {
        let seconds = self
            .expires_at
            .map_or(0, |exp| unix_now().saturating_sub(exp));
        rounded(Duration::from_secs(seconds))
    }

    /// The expiry as RFC 3339.
    pub fn expires_rfc3339(&self) -> Option<String> {
        let exp = self.expires_at?;
        let at = std::time::UNIX_EPOCH + Duration::from_secs(exp);
        Some(humantime::format_rfc3339_seconds(at).to_string())
    }
}

/// A duration to one unit: `45s`, `3m`, `5h`, `2d`.
pub fn rounded(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3_600 => format!("{}m", seconds / 60),
        3_600..86_400 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use longrun_shared::auth::{TokenRequest, mint};

    #[test]
    fn a_minted_token_reads_back() {
        let token = mint(
            "some-secret-0123456789abcdef",
            &TokenRequest {
                sub: "dana",
                roles: vec!["admin".into()],
                ttl: Duration::from_secs(3_600),
                issuer: None,
                audience: None,
            },
        )
        .expect("mints");
        let info = TokenInfo::read(&token).expect("a JWT");
        assert_eq!(info.sub, "dana");
        assert_eq!(info.roles, ["admin"]);
        assert!(!info.is_expired());
        assert!(info.expires_rfc3339().is_some_and(|at| at.ends_with('Z')));
    }

    #[test]
    fn an_old_token_is_expired_and_garbage_is_no_token() {
        let info = TokenInfo {
            sub: "dana".into(),
            roles: vec![],
            expires_at: Some(unix_now() - 190),
        };
        assert!(info.is_expired());
        assert_eq!(info.expired_for(), "3m");
        assert_eq!(TokenInfo::read("not-a-jwt"), None);
        assert_eq!(TokenInfo::read("a.b.c"), None);
    }

    #[test]
    fn durations_round_to_one_unit() {
        assert_eq!(rounded(Duration::from_secs(45)), "45s");
        assert_eq!(rounded(Duration::from_secs(7_200)), "2h");
        assert_eq!(rounded(Duration::from_secs(3 * 86_400)), "3d");
    }
}
