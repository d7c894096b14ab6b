//! The router serves the embedded page with its security headers, and the
//! page stands alone: every file it references is embedded and local, and
//! no script builds HTML from strings.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

fn app() -> Router {
    router(UiSettings {
        public_ws_url: None,
        ws_port: 8081,
    })
}

async fn get(app: Router, uri: &str, if_none_match: Option<&str>) -> Response {
    let mut request = Request::get(uri).header(header::ACCEPT, "text/html,*/*;q=0.8");
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    app.oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible")
}

async fn text(response: Response) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

fn header_of(response: &Response, name: header::HeaderName) -> &str {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn the_root_and_ui_redirect_to_the_page() {
    for uri in ["/", "/ui"] {
        let response = get(app(), uri, None).await;
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT, "{uri}");
        assert_eq!(header_of(&response, header::LOCATION), "/ui/");
    }
}

#[tokio::test]
async fn the_root_is_a_problem_for_api_clients() {
    let request = Request::get("/")
        .header(header::ACCEPT, "application/json")
        .header("x-request-id", "req-1")
        .body(Body::empty())
        .expect("request");
    let response = app().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(header_of(&response, header::CONTENT_TYPE), PROBLEM_JSON);
    let body: serde_json::Value = serde_json::from_str(&text(response).await).expect("json");
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["request_id"], "req-1");
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy() {
    let response = get(app(), "/ui/", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header_of(&response, header::CONTENT_TYPE).starts_with("text/html"));
    let policy = header_of(&response, header::CONTENT_SECURITY_POLICY);
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(
        header_of(&response, header::X_CONTENT_TYPE_OPTIONS),
        "nosniff"
    );
    assert_eq!(header_of(&response, header::X_FRAME_OPTIONS), "DENY");
    let body = text(response).await;
    assert!(body.contains(r#"<script type="module" src="js/main.js">"#));
}

#[tokio::test]
async fn assets_have_their_types_and_revalidate_with_etags() {
    let response = get(app(), "/ui/js/main.js", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header_of(&response, header::CONTENT_TYPE).contains("javascript"));
    assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
    let etag = header_of(&response, header::ETAG).to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");

    let again = get(app(), "/ui/js/main.js", Some(&etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(text(again).await.is_empty());

    let css = get(app(), "/ui/app.css", Some("\"stale\"")).await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(header_of(&css, header::CONTENT_TYPE).starts_with("text/css"));
}

#[tokio::test]
async fn an_unknown_file_is_a_problem_not_the_page() {
    let response = get(app(), "/ui/nothing.js", None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(header_of(&response, header::CONTENT_TYPE), PROBLEM_JSON);
    let body: serde_json::Value = serde_json::from_str(&text(response).await).expect("json");
    assert_eq!(body["code"], "not_found");
    let traversal = get(app(), "/ui/../Cargo.toml", None).await;
    assert_eq!(traversal.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn config_names_the_gateway() {
    let body = text(get(app(), "/ui/config.json", None).await).await;
    let config: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(config["ws_port"], 8081);
    assert!(config["ws_url"].is_null());

    let public = router::<()>(UiSettings {
        public_ws_url: Some("wss://example.com/v1/ws".into()),
        ws_port: 0,
    });
    let config: serde_json::Value =
        serde_json::from_str(&text(get(public, "/ui/config.json", None).await).await)
            .expect("json");
    assert_eq!(config["ws_url"], "wss://example.com/v1/ws");
    assert!(config["ws_port"].is_null());
}

/// `src="…"`, `href="…"` and `from '…'` references in a file.
fn references(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for marker in ["src=\"", "href=\"", "from '", "import('"] {
        let mut rest = source;
        while let Some(start) = rest.find(marker) {
            rest = &rest[start + marker.len()..];
            let end = rest.find(['"', '\'']).unwrap_or(rest.len());
            found.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    found
}

#[test]
fn the_page_references_only_embedded_local_files() {
    let files = files();
    let index = file_text("index.html").expect("index.html is embedded");
    let mut checked = 0;
    for reference in references(&index) {
        assert!(
            !reference.contains("//"),
            "index.html loads {reference} from elsewhere"
        );
        assert!(
            files.contains(&reference),
            "index.html needs {reference}, which is not embedded"
        );
        checked += 1;
    }
    for file in files.iter().filter(|name| name.ends_with(".js")) {
        let source = file_text(file).expect("utf-8");
        let dir = file.rsplit_once('/').map_or("", |(dir, _)| dir);
        for reference in references(&source) {
            if !reference.starts_with('.') {
                continue;
            }
            let resolved = resolve(dir, &reference);
            assert!(
                files.contains(&resolved),
                "{file} imports {reference} ({resolved}), which is not embedded"
            );
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} references found");
}

fn resolve(dir: &str, reference: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|part| !part.is_empty()).collect();
    for part in reference.split('/') {
        match part {
            "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

#[test]
fn no_script_turns_strings_into_html() {
    let forbidden = [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "createContextualFragment",
    ];
    for file in files().iter().filter(|name| name.ends_with(".js")) {
        let source = file_text(file).expect("utf-8");
        for word in forbidden {
            assert!(
                !source.contains(word),
                "{file} uses {word}: build nodes with dom.js"
            );
        }
    }
}
