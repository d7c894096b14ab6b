//! `longrun config`: the settings in effect and where each comes from.

use serde_json::{Value, json};

use crate::commands::Outcome;
use crate::credentials::TokenInfo;
use crate::failure::exit;
use crate::output;
use crate::settings::{Setting, Settings};

pub fn show(settings: &Settings, json: bool) -> Outcome {
    let token = settings.token.as_ref();
    let info = token.and_then(|token| TokenInfo::read(&token.value));
    if json {
        let file = settings
            .config_file
            .as_ref()
            .map(|(path, exists)| json!({"path": path.display().to_string(), "exists": exists}));
        output::json(&json!({
            "url": setting_json(&settings.url),
            "ws_url": setting_json(&settings.ws_url),
            "token": token.map(|token| json!({
                "source": token.source.to_string(),
                "sub": info.as_ref().map(|i| i.sub.clone()),
                "roles": info.as_ref().map(|i| i.roles.clone()),
                "expires_at": info.as_ref().and_then(|i| i.expires_rfc3339()),
                "expired": info.as_ref().map(TokenInfo::is_expired),
            })),
            "config_file": file,
        }));
        return Ok(exit::OK);
    }
    say!(
        "url       {}  ({})",
        settings.url.value,
        settings.url.source
    );
    say!(
        "ws_url    {}  ({})",
        settings.ws_url.value,
        settings.ws_url.source
    );
    match (token, &info) {
        (None, _) => {
            say!("token     none  (set LONGRUN_TOKEN; `longrun token --sub NAME` mints one)")
        }
        (Some(token), None) => say!("token     not a JWT  ({})", token.source),
        (Some(token), Some(info)) => {
            let roles = if info.roles.is_empty() {
                String::new()
            } else {
                format!(", roles {}", info.roles.join(","))
            };
            let expiry = match info.expires_rfc3339() {
                Some(at) if info.is_expired() => format!(", EXPIRED {at}"),
                Some(at) => format!(", expires {at}"),
                None => String::new(),
            };
            say!(
                "token     for `{}`{roles}{expiry}  ({})",
                info.sub,
                token.source
            );
        }
    }
    match &settings.config_file {
        Some((path, true)) => say!("config    {}", path.display()),
        Some((path, false)) => say!("config    {}  (not found)", path.display()),
        None => say!("config    none  (no HOME)"),
    }
    Ok(exit::OK)
}

fn setting_json(setting: &Setting) -> Value {
    json!({"value": setting.value, "source": setting.source.to_string()})
}
