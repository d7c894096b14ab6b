//! The web dashboard as the api serves it: mounted at `/` and `/ui/` next
//! to the HTTP API, told where the gateway is, and the list it opens on
//! answers for a user who has no operations yet. (The page itself is
//! tested in a real browser by scripts/browser-test.)

use longrun_tests::{Platform, token};
use reqwest::redirect::Policy;
use serde_json::Value;

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

#[tokio::test]
async fn the_api_serves_the_dashboard_beside_its_routes() {
    let platform = Platform::builder()
        .config(|config| config.public_ws_url = Some("wss://gateway.example/v1/ws".into()))
        .start()
        .await;
    let http = plain_client();

    // A browser asking for the api's root goes to the dashboard; an API client learns there is nothing.
    let root = http
        .get(format!("{}/", platform.api_url))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("answers");
    assert_eq!(root.status(), 307);
    assert_eq!(root.headers()["location"], "/ui/");
    let root = http
        .get(format!("{}/", platform.api_url))
        .send()
        .await
        .expect("answers");
    assert_eq!(root.status(), 404);
    assert_eq!(root.headers()["content-type"], "application/problem+json");

    let page = http
        .get(format!("{}/ui/", platform.api_url))
        .send()
        .await
        .expect("answers");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .expect("ascii")
            .contains("script-src 'self'")
    );
    assert!(page.text().await.expect("body").contains("js/main.js"));

    let config: Value = http
        .get(format!("{}/ui/config.json", platform.api_url))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(config["ws_url"], "wss://gateway.example/v1/ws");

    // The API's own routes and problems are untouched by the mount.
    let unknown = http
        .get(format!("{}/v1/nothing", platform.api_url))
        .send()
        .await
        .expect("answers");
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn a_user_without_operations_gets_an_empty_list() {
    let platform = Platform::start().await;
    let response = plain_client()
        .get(format!("{}/v1/operations", platform.api_url))
        .bearer_auth(token("newcomer"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.expect("json");
    assert_eq!(page["operations"], Value::Array(Vec::new()));
    assert!(page["next_cursor"].is_null());
}
