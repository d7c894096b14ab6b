//! Bearer tokens: HS256 JWTs whose `sub` owns operations.
//!
//! One [`Verifier`] is built from the configuration and shared by the api
//! and the realtime gateway, so both accept and refuse exactly the same
//! tokens: only HS256 (never `none`, never another algorithm), `exp` and
//! `sub` required, `nbf` checked when present, `iss`/`aud` checked when
//! configured, with the configured leeway on both time claims.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::JwtConfig;

/// The role that may read and cancel every owner's operations.
pub const ADMIN_ROLE: &str = "admin";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// A string, or (as RFC 7519 allows) an array of strings, of which the
    /// configured audience must be one; only the first is kept here.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "one_audience"
    )]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// Reads `aud` as a string or an array of strings (the check against the
/// configured audience is jsonwebtoken's, on the raw claim).
fn one_audience<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Audience {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Audience>::deserialize(deserializer)? {
        None => None,
        Some(Audience::One(audience)) => Some(audience),
        Some(Audience::Many(audiences)) => audiences.into_iter().next(),
    })
}

/// Who is calling, once the token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub owner: String,
    pub admin: bool,
    /// When the token stops being valid (seconds since the epoch, leeway included).
    pub expires_at: u64,
}

impl Principal {
    /// True when this caller may see an operation owned by `owner`.
    pub fn may_access(&self, owner: &str) -> bool {
        self.admin || self.owner == owner
    }
}

/// Why a token was refused. The message is safe to show to the caller.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("the token has expired; mint a new one (e.g. `longrun token --sub NAME`)")]
    Expired,
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("the token is invalid: {0}")]
    Invalid(String),
}

/// Checks tokens against the configured secret and claims.
#[derive(Clone)]
pub struct Verifier {
    inner: std::sync::Arc<VerifierInner>,
}

/// Cloned per request, so shared.
struct VerifierInner {
    key: DecodingKey,
    validation: Validation,
    leeway_s: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(config: &JwtConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = config.leeway_s;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Verifier {
            inner: std::sync::Arc::new(VerifierInner {
                key: DecodingKey::from_secret(config.secret.as_bytes()),
                validation,
                leeway_s: config.leeway_s,
            }),
        }
    }

    /// Verifies a raw token (without the `Bearer ` prefix).
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let data =
            decode::<Claims>(token, &self.inner.key, &self.inner.validation).map_err(|err| {
                match err.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                    ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        AuthError::Invalid("only HS256 is accepted".into())
                    }
                    ErrorKind::MissingRequiredClaim(claim) => {
                        AuthError::Invalid(format!("missing required claim `{claim}`"))
                    }
                    ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer".into()),
                    ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience".into()),
                    _ => AuthError::Invalid("malformed token".into()),
                }
            })?;
        let claims = data.claims;
        if claims.sub.is_empty()
            || claims.sub.len() > 256
            || claims.sub.chars().any(char::is_control)
        {
            return Err(AuthError::Invalid(
                "`sub` must be 1 to 256 printable characters".into(),
            ));
        }
        Ok(Principal {
            admin: claims.roles.iter().any(|role| role == ADMIN_ROLE),
            owner: claims.sub,
            expires_at: claims.exp.saturating_add(self.inner.leeway_s),
        })
    }

    /// Extracts and verifies the token of an `Authorization: Bearer …` header value.
    pub fn verify_header(&self, header: &str) -> Result<Principal, AuthError> {
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Invalid("use the Bearer scheme".into()));
        }
        self.verify(token)
    }
}

/// What to put in a token minted by [`mint`].
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    pub sub: &'a str,
    pub roles: Vec<String>,
    pub ttl: Duration,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
}

/// Signs a token with the configured secret (for `longrun token`, dev mode and tests).
pub fn mint(
    secret: &str,
    request: &TokenRequest<'_>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = unix_now();
    let claims = Claims {
        sub: request.sub.to_owned(),
        exp: now.saturating_add(request.ttl.as_secs().max(1)),
        nbf: Some(now),
        iat: Some(now),
        iss: request.issuer.map(str::to_owned),
        aud: request.audience.map(str::to_owned),
        roles: request.roles.clone(),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// Signs arbitrary claims (tests use it for expired, future and odd tokens).
pub fn mint_claims(secret: &str, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config() -> JwtConfig {
        JwtConfig {
            secret: SECRET.into(),
            issuer: None,
            audience: None,
            leeway_s: 5,
        }
    }

    fn request(sub: &str) -> TokenRequest<'_> {
        TokenRequest {
            sub,
            roles: vec![],
            ttl: Duration::from_secs(60),
            issuer: None,
            audience: None,
        }
    }

    #[test]
    fn a_minted_token_verifies() {
        let token = mint(SECRET, &request("alice")).expect("mints");
        let principal = Verifier::new(&config()).verify(&token).expect("valid");
        assert_eq!(principal.owner, "alice");
        assert!(!principal.admin);
    }

    #[test]
    fn admin_role_is_recognised() {
        let mut req = request("root");
        req.roles = vec!["admin".into()];
        let token = mint(SECRET, &req).expect("mints");
        assert!(
            Verifier::new(&config())
                .verify(&token)
                .expect("valid")
                .admin
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"eve","exp":{}}}"#, unix_now() + 60));
        let token = format!("{header}.{body}.");
        assert!(Verifier::new(&config()).verify(&token).is_err());
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        let token = mint("another-secret-of-enough-length", &request("eve")).expect("mints");
        assert_eq!(
            Verifier::new(&config()).verify(&token),
            Err(AuthError::Invalid("bad signature".into()))
        );
    }

    #[test]
    fn expired_and_future_tokens_are_refused() {
        let now = unix_now();
        let expired = Claims {
            sub: "a".into(),
            exp: now - 60,
            nbf: None,
            iat: None,
            iss: None,
            aud: None,
            roles: vec![],
        };
        let token = mint_claims(SECRET, &expired).expect("mints");
        assert_eq!(
            Verifier::new(&config()).verify(&token),
            Err(AuthError::Expired)
        );
        let future = Claims {
            exp: now + 600,
            nbf: Some(now + 300),
            ..expired
        };
        let token = mint_claims(SECRET, &future).expect("mints");
        assert_eq!(
            Verifier::new(&config()).verify(&token),
            Err(AuthError::NotYetValid)
        );
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        #[derive(Serialize)]
        struct NoExp {
            sub: &'static str,
        }
        let token = encode(
            &Header::new(Algorithm::HS256),
            &NoExp { sub: "eve" },
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("mints");
        assert!(Verifier::new(&config()).verify(&token).is_err());
    }

    #[test]
    fn another_algorithm_is_refused() {
        let token = encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                sub: "eve".into(),
                exp: unix_now() + 60,
                nbf: None,
                iat: None,
                iss: None,
                aud: None,
                roles: vec![],
            },
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("mints");
        assert!(Verifier::new(&config()).verify(&token).is_err());
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let mut cfg = config();
        cfg.issuer = Some("longrun".into());
        cfg.audience = Some("api".into());
        let verifier = Verifier::new(&cfg);
        let plain = mint(SECRET, &request("a")).expect("mints");
        assert!(verifier.verify(&plain).is_err());
        let mut req = request("a");
        req.issuer = Some("longrun");
        req.audience = Some("api");
        let good = mint(SECRET, &req).expect("mints");
        assert!(verifier.verify(&good).is_ok());
    }

    #[test]
    fn an_audience_array_is_accepted_when_it_names_ours() {
        #[derive(Serialize)]
        struct ManyAudiences {
            sub: &'static str,
            exp: u64,
            aud: Vec<&'static str>,
        }
        let mut cfg = config();
        cfg.audience = Some("api".into());
        let sign = |aud: Vec<&'static str>| {
            encode(
                &Header::new(Algorithm::HS256),
                &ManyAudiences {
                    sub: "a",
                    exp: unix_now() + 60,
                    aud,
                },
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .expect("mints")
        };
        let verifier = Verifier::new(&cfg);
        assert!(verifier.verify(&sign(vec!["other", "api"])).is_ok());
        assert_eq!(
            verifier.verify(&sign(vec!["other"])),
            Err(AuthError::Invalid("wrong audience".into()))
        );
    }

    #[test]
    fn header_needs_the_bearer_scheme() {
        let token = mint(SECRET, &request("a")).expect("mints");
        let verifier = Verifier::new(&config());
        assert!(verifier.verify_header(&format!("Bearer {token}")).is_ok());
        assert!(verifier.verify_header(&format!("Basic {token}")).is_err());
        assert_eq!(verifier.verify_header(""), Err(AuthError::Missing));
    }
}
