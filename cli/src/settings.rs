//! Where the CLI finds the platform and its token: flags, then the
//! environment (`LONGRUN_URL`, `LONGRUN_WS_URL`, `LONGRUN_TOKEN`), then the
//! config file (`~/.config/longrun/config.toml`), then the defaults.
//!
//! ```toml
//! url = "http://127.0.0.1:8080"
//! ws_url = "ws://127.0.0.1:8081"
//! token = "eyJ..."
//! ```

use std::path::PathBuf;

use longrun_client::Client;
use serde::Deserialize;

use crate::args::ClientArgs;
use crate::failure::Failure;

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
pub const DEFAULT_WS_URL: &str = "ws://127.0.0.1:8081";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    url: Option<String>,
    ws_url: Option<String>,
    token: Option<String>,
}

fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("longrun").join("config.toml"))
}

fn read_file(args: &ClientArgs) -> Result<FileSettings, Failure> {
    let (path, explicit) = match &args.config {
        Some(path) => (path.clone(), true),
        None => match default_path() {
            Some(path) => (path, false),
            None => return Ok(FileSettings::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|err| Failure::usage(format!("{}: {}", path.display(), err.message()))),
        Err(err) if !explicit && err.kind() == std::io::ErrorKind::NotFound => {
            Ok(FileSettings::default())
        }
        Err(err) => Err(Failure::usage(format!(
            "cannot read {}: {err}",
            path.display()
        ))),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// A client configured from flags, environment and config file.
pub fn client(args: &ClientArgs) -> Result<Client, Failure> {
    let file = read_file(args)?;
    let url = args
        .url
        .clone()
        .or_else(|| env("LONGRUN_URL"))
        .or(file.url)
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let ws_url = args
        .ws_url
        .clone()
        .or_else(|| env("LONGRUN_WS_URL"))
        .or(file.ws_url)
        .unwrap_or_else(|| DEFAULT_WS_URL.to_owned());
    let token = args.token.clone().or_else(|| env("LONGRUN_TOKEN")).or(file.token).ok_or(Failure {
        code: crate::failure::exit::AUTH,
        message: "no token: set LONGRUN_TOKEN (mint one with `longrun token --sub NAME`) or pass --token".into(),
    })?;
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(Failure::usage(format!(
            "the api URL must start with http:// or https://, not `{url}`"
        )));
    }
    if !ws_url.starts_with("ws://") && !ws_url.starts_with("wss://") {
        return Err(Failure::usage(format!(
            "the gateway URL must start with ws:// or wss://, not `{ws_url}`"
        )));
    }
    Ok(Client::new(&url, &ws_url, &token))
}
