//! The longrun web dashboard: a page and its scripts, embedded in the
//! binary at build time (no CDN, no files on disk, works offline), and the
//! axum routes that serve them.
//!
//! The api service mounts [`router`]: `/ui` — and `/` for a browser (a
//! request that accepts `text/html`; other clients get the api's usual 404
//! problem there) — redirect to `/ui/`,
//! `/ui/` is the page, `/ui/config.json` tells the page where the WebSocket
//! gateway is, and `/ui/<file>` serves the other files of `assets/`. The
//! page talks to the api with the same bearer tokens as any client; the
//! files themselves are public and hold no data.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles
//! from this origin only), and an `ETag` so browsers revalidate cheaply.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use longrun_shared::problem::{Code, PROBLEM_JSON, Problem};
use rust_embed::RustEmbed;

/// The dashboard's files (`ui/assets/`), compiled into the binary.
#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// The header the api's request-id layer sets on every request.
const REQUEST_ID: &str = "x-request-id";

/// Where the page is mounted.
pub const BASE: &str = "/ui/";

/// Scripts, styles, images and fonts from this origin only; WebSockets to
/// any host (the gateway is on another port or host); no frames, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self' ws: wss:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What the page needs to know about the deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UiSettings {
    /// `LONGRUN_PUBLIC_WS_URL`: the gateway's URL as browsers reach it.
    pub public_ws_url: Option<String>,
    /// The gateway's port (`LONGRUN_WS_ADDR`), used with the page's own
    /// host when no public URL is set.
    pub ws_port: u16,
}

impl UiSettings {
    /// The body of `/ui/config.json`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "ws_url": self.public_ws_url,
            "ws_port": (self.ws_port != 0).then_some(self.ws_port),
            "version": env!("CARGO_PKG_VERSION"),
        })
        .to_string()
    }
}

/// The dashboard's routes, to merge into the api's router.
pub fn router<S: Clone + Send + Sync + 'static>(settings: UiSettings) -> Router<S> {
    let config: Arc<str> = Arc::from(settings.to_json());
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { root(&headers) }))
        .route("/ui", get(|| async { Redirect::temporary(BASE) }))
        .route("/ui/", get(|headers: HeaderMap| async move { asset("index.html", &headers) }))
        .route(
            "/ui/config.json",
            get(move || {
                let config = config.clone();
                async move { config_response(&config) }
            }),
        )
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                asset(&path, &headers)
            }),
        )
}

/// `/`: browsers go to the dashboard; API clients learn there is nothing here.
fn root(request: &HeaderMap) -> Response {
    let browser = request
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if browser {
        return Redirect::temporary(BASE).into_response();
    }
    problem(
        Code::NotFound,
        "no such route; the API is described at /openapi.json, the dashboard is at /ui/".into(),
        request,
    )
}

/// One embedded file, or a 404 problem; 304 when the browser's copy is current.
fn asset(path: &str, request: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return not_found(path, request);
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()));
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        file.data.into_owned().into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    // File names carry no hash: always revalidate (a 304 costs one round trip).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(response)
}

fn config_response(config: &str) -> Response {
    let mut response = config.to_owned().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure(response)
}

fn not_found(path: &str, request: &HeaderMap) -> Response {
    problem(
        Code::NotFound,
        format!("the dashboard has no file `{path}`; open {BASE}"),
        request,
    )
}

/// A problem answer quoting the request's id (set by the api's request-id layer), like the api's own.
fn problem(code: Code, detail: String, request: &HeaderMap) -> Response {
    let mut problem = Problem::new(code, detail);
    problem.request_id = request
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut response = (StatusCode::NOT_FOUND, body).into_response();
    if let Ok(value) = HeaderValue::from_str(PROBLEM_JSON) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    secure(response)
}

/// Headers that keep the page from being framed, sniffed or leaking its URL.
fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Names of every embedded file (for tests and diagnostics).
pub fn files() -> Vec<String> {
    Assets::iter().map(|name| name.into_owned()).collect()
}

/// The text of an embedded file, when it is UTF-8.
pub fn file_text(path: &str) -> Option<String> {
    Assets::get(path).and_then(|file| String::from_utf8(file.data.into_owned()).ok())
}

#[cfg(test)]
mod tests;
