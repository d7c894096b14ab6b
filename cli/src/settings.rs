//! Where the CLI finds the platform and its token. Each setting comes from
//! the first of: a flag, the environment (`LONGRUN_URL`, `LONGRUN_WS_URL`,
//! `LONGRUN_TOKEN`), the config file (`--config`, else
//! `$XDG_CONFIG_HOME/longrun/config.toml`, else
//! `~/.config/longrun/config.toml`), the default.
//!
//! ```toml
//! url = "http://127.0.0.1:8080"
//! ws_url = "ws://127.0.0.1:8081"
//! token = "eyJ..."
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use longrun_client::Client;
use serde::Deserialize;

use crate::args::GlobalArgs;
use crate::credentials::TokenInfo;
use crate::failure::Failure;

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
pub const DEFAULT_WS_URL: &str = "ws://127.0.0.1:8081";

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    Env(&'static str),
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(name) => write!(f, "flag {name}"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub source: Source,
}

/// Every setting in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub url: Setting,
    pub ws_url: Setting,
    pub token: Option<Setting>,
    /// The config file consulted, and whether it exists.
    pub config_file: Option<(PathBuf, bool)>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    url: Option<String>,
    ws_url: Option<String>,
    token: Option<String>,
}

/// The config file to read: `--config`, else the XDG/home default.
fn config_path(
    flags: &GlobalArgs,
    env: &impl Fn(&str) -> Option<String>,
) -> Option<(PathBuf, bool)> {
    if let Some(path) = &flags.config {
        return Some((path.clone(), true));
    }
    let base = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some((base.join("longrun").join("config.toml"), false))
}

fn read_file(path: &Path, explicit: bool) -> Result<Option<FileSettings>, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map(Some).map_err(|err| {
            Failure::usage(format!(
                "{}: {} (it takes url, ws_url and token)",
                path.display(),
                err.message()
            ))
        }),
        Err(err) if !explicit && err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Failure::usage(format!(
            "cannot read the config file {}: {err}",
            path.display()
        ))),
    }
}

/// Resolves every setting from `flags`, the environment `env` and the
/// config file.
pub fn resolve(
    flags: &GlobalArgs,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Settings, Failure> {
    let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    let config_file = config_path(flags, &env);
    let file = match &config_file {
        Some((path, explicit)) => read_file(path, *explicit)?,
        None => None,
    }
    .unwrap_or_default();
    let file_path = config_file.as_ref().map(|(path, _)| path.clone());
    let pick = |flag: &Option<String>,
                flag_name: &'static str,
                env_name: &'static str,
                in_file: Option<String>| {
        let from_file = |value: String| Setting {
            value,
            source: Source::File(file_path.clone().unwrap_or_default()),
        };
        flag.clone()
            .filter(|value| !value.trim().is_empty())
            .map(|value| Setting {
                value,
                source: Source::Flag(flag_name),
            })
            .or_else(|| {
                env(env_name).map(|value| Setting {
                    value,
                    source: Source::Env(env_name),
                })
            })
            .or_else(|| in_file.filter(|v| !v.trim().is_empty()).map(from_file))
    };
    let url = pick(&flags.url, "--url", "LONGRUN_URL", file.url).unwrap_or(Setting {
        value: DEFAULT_URL.into(),
        source: Source::Default,
    });
    let ws_url =
        pick(&flags.ws_url, "--ws-url", "LONGRUN_WS_URL", file.ws_url).unwrap_or(Setting {
            value: DEFAULT_WS_URL.into(),
            source: Source::Default,
        });
    let token = pick(&flags.token, "--token", "LONGRUN_TOKEN", file.token);
    let config_file = config_file.map(|(path, _)| {
        let exists = path.is_file();
        (path, exists)
    });
    Ok(Settings {
        url,
        ws_url,
        token,
        config_file,
    })
}

/// What a client command works with.
#[derive(Debug)]
pub struct Context {
    pub client: Client,
    pub json: bool,
    pub token: Option<TokenInfo>,
}

impl Settings {
    /// Checks the URLs and the token, and makes the client.
    pub fn context(&self, json: bool) -> Result<Context, Failure> {
        check_url(
            &self.url,
            &["http://"],
            "https:// needs a TLS-terminating proxy",
        )?;
        check_url(
            &self.ws_url,
            &["ws://"],
            "wss:// needs a TLS-terminating proxy",
        )?;
        let Some(token) = &self.token else {
            return Err(Failure::auth(
                "no token: set LONGRUN_TOKEN (`longrun dev` prints one; \
                 `longrun token --sub NAME` mints one) or pass --token",
            ));
        };
        Ok(Context {
            client: Client::new(&self.url.value, &self.ws_url.value, token.value.trim()),
            json,
            token: TokenInfo::read(&token.value),
        })
    }
}

fn check_url(setting: &Setting, schemes: &[&str], tls_note: &str) -> Result<(), Failure> {
    let value = setting.value.trim();
    if schemes.iter().any(|scheme| value.starts_with(scheme)) {
        return Ok(());
    }
    let secure = value.starts_with("https://") || value.starts_with("wss://");
    let why = if secure {
        format!("this client speaks plain HTTP and WebSocket; {tls_note}")
    } else {
        format!("it must start with {}", schemes.join(" or "))
    };
    Err(Failure::usage(format!(
        "bad URL `{value}` (from {}): {why}",
        setting.source
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn write_config(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("longrun").join("config.toml");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn flags_beat_env_which_beats_the_file_which_beats_defaults() {
        let home = tempfile::tempdir().expect("tempdir");
        let path = write_config(
            home.path(),
            "url = \"http://file:1\"\nws_url = \"ws://file:2\"\ntoken = \"file-token\"\n",
        );
        let env = env_of(&[
            ("XDG_CONFIG_HOME", home.path().to_str().expect("utf8")),
            ("LONGRUN_WS_URL", "ws://env:2"),
            ("LONGRUN_TOKEN", "env-token"),
        ]);
        let flags = GlobalArgs {
            token: Some("flag-token".into()),
            ..GlobalArgs::default()
        };
        let settings = resolve(&flags, env).expect("resolves");
        assert_eq!(settings.url.value, "http://file:1");
        assert_eq!(settings.url.source, Source::File(path.clone()));
        assert_eq!(settings.ws_url.value, "ws://env:2");
        assert_eq!(settings.ws_url.source, Source::Env("LONGRUN_WS_URL"));
        let token = settings.token.expect("a token");
        assert_eq!(token.value, "flag-token");
        assert_eq!(token.source, Source::Flag("--token"));
        assert_eq!(settings.config_file, Some((path, true)));
    }

    #[test]
    fn without_anything_the_defaults_apply_and_there_is_no_token() {
        let home = tempfile::tempdir().expect("tempdir");
        let env = env_of(&[
            ("HOME", home.path().to_str().expect("utf8")),
            ("LONGRUN_URL", "  "),
        ]);
        let settings = resolve(&GlobalArgs::default(), env).expect("resolves");
        assert_eq!(settings.url.value, DEFAULT_URL);
        assert_eq!(settings.url.source, Source::Default, "blank env is unset");
        assert_eq!(settings.ws_url.value, DEFAULT_WS_URL);
        assert_eq!(settings.token, None);
        let (path, exists) = settings.config_file.clone().expect("a default path");
        assert!(path.ends_with(".config/longrun/config.toml"));
        assert!(!exists);
        let err = settings.context(false).expect_err("no token");
        assert_eq!(err.code, crate::failure::exit::AUTH);
    }

    #[test]
    fn a_broken_or_missing_explicit_config_file_is_a_usage_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broken = dir.path().join("broken.toml");
        std::fs::write(&broken, "url = \"http://x\"\ncolour = \"blue\"\n").expect("write");
        let flags = GlobalArgs {
            config: Some(broken),
            ..GlobalArgs::default()
        };
        let err = resolve(&flags, env_of(&[])).expect_err("unknown key");
        assert_eq!(err.code, crate::failure::exit::USAGE);
        assert!(err.message.contains("colour"), "{}", err.message);

        let flags = GlobalArgs {
            config: Some(dir.path().join("missing.toml")),
            ..GlobalArgs::default()
        };
        let err = resolve(&flags, env_of(&[])).expect_err("missing");
        assert!(
            err.message.contains("cannot read the config file"),
            "{}",
            err.message
        );
    }

    #[test]
    fn urls_are_checked_and_tls_is_explained() {
        let env = env_of(&[
            ("LONGRUN_URL", "https://example.org"),
            ("LONGRUN_TOKEN", "t"),
        ]);
        let settings = resolve(&GlobalArgs::default(), env).expect("resolves");
        let err = settings.context(false).expect_err("https");
        assert!(
            err.message.contains("TLS-terminating proxy"),
            "{}",
            err.message
        );
        assert!(err.message.contains("env LONGRUN_URL"), "{}", err.message);

        let env = env_of(&[("LONGRUN_WS_URL", "localhost:8081"), ("LONGRUN_TOKEN", "t")]);
        let settings = resolve(&GlobalArgs::default(), env).expect("resolves");
        let err = settings.context(false).expect_err("no scheme");
        assert!(
            err.message.contains("must start with ws://"),
            "{}",
            err.message
        );
    }
}
