//! `longrun token`: mints a token with the platform's secret.

use longrun_shared::auth::{TokenRequest, mint};
use serde_json::json;

use crate::args::TokenArgs;
use crate::commands::Outcome;
use crate::credentials::TokenInfo;
use crate::failure::{Failure, exit};
use crate::output;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

pub fn token(args: &TokenArgs, json: bool) -> Outcome {
    let secret = env("LONGRUN_JWT_SECRET").unwrap_or_default();
    if secret.len() < 16 {
        return Err(Failure::usage(
            "LONGRUN_JWT_SECRET must hold the platform's secret (16 characters or more) to mint \
             tokens; `longrun dev` prints it",
        ));
    }
    let sub = args.sub.trim();
    if sub.is_empty() || sub.len() > 256 || sub.chars().any(char::is_control) {
        return Err(Failure::usage(
            "--sub must be 1 to 256 printable characters",
        ));
    }
    let issuer = env("LONGRUN_JWT_ISSUER");
    let audience = env("LONGRUN_JWT_AUDIENCE");
    let roles: Vec<String> = args
        .roles
        .iter()
        .map(|role| role.trim().to_owned())
        .filter(|role| !role.is_empty())
        .collect();
    let token = mint(
        &secret,
        &TokenRequest {
            sub,
            roles: roles.clone(),
            ttl: args.ttl,
            issuer: issuer.as_deref(),
            audience: audience.as_deref(),
        },
    )
    .map_err(|err| Failure::usage(format!("cannot mint a token: {err}")))?;
    if json {
        let expires_at = TokenInfo::read(&token).and_then(|info| info.expires_rfc3339());
        output::json(&json!({
            "token": token,
            "sub": sub,
            "roles": roles,
            "expires_at": expires_at,
        }));
    } else {
        say!("{token}");
    }
    Ok(exit::OK)
}
