//! The `longrun` command line against a running platform: every client
//! command in text and `--json`, and every exit code (outcomes, timeout,
//! usage, connection and auth failures). Live display: `cli_live.rs`.

use std::process::Output;
use std::time::Duration;

use longrun_client::{Client, StartOptions, StartParams, Status};
use longrun_shared::auth::{Claims, Verifier, mint_claims, unix_now};
use longrun_shared::config::JwtConfig;
use longrun_tests::cli::run_with_stdin;
use longrun_tests::{Platform, SECRET, process, token};
use serde_json::{Value, json};

use crate::LONGRUN;

/// The binary pointed at a platform as `sub`.
#[derive(Clone)]
pub struct Cli {
    pub env: Vec<(String, String)>,
}

impl Cli {
    pub fn new(platform: &Platform, sub: &str) -> Cli {
        let mut env = platform.env();
        env.push(("LONGRUN_TOKEN".into(), token(sub)));
        Cli { env }
    }

    pub fn with(mut self, name: &str, value: &str) -> Cli {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn without(mut self, name: &str) -> Cli {
        self.env.retain(|(n, _)| n != name);
        self
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        process::run(LONGRUN, &self.env, args).await
    }

    /// Runs and expects `code`; its stdout.
    pub async fn expect(&self, code: i32, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert_exit(&output, code, args);
        String::from_utf8(output.stdout).expect("utf8")
    }

    /// Runs with `--json`, expects `code`; stdout as one JSON document.
    pub async fn json(&self, code: i32, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.expect(code, &args).await;
        serde_json::from_str(&out).unwrap_or_else(|err| panic!("{args:?}: not JSON ({err}): {out}"))
    }

    /// Runs, expects `code`; stderr, checked to be one plain line.
    pub async fn error(&self, code: i32, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert_exit(&output, code, args);
        let stderr = String::from_utf8(output.stderr).expect("utf8");
        assert_plain_error(&stderr);
        stderr
    }
}

pub fn assert_exit(output: &Output, code: i32, args: &[&str]) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "longrun {args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One line, starting `longrun: `, and nothing of a Rust debug dump.
pub fn assert_plain_error(stderr: &str) {
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("longrun: "), "{stderr}");
    for dump in [
        "panicked",
        "Error {",
        "Problem {",
        "RUST_BACKTRACE",
        "{ kind: ",
    ] {
        assert!(!stderr.contains(dump), "a debug dump ({dump}): {stderr}");
    }
}

pub async fn start(client: &Client, kind: &str, input: Value) -> String {
    client
        .start(kind, &input, &StartOptions::default())
        .await
        .expect("started")
        .id
}

/// Every stdout line parsed as JSON.
pub fn ndjson(out: &str) -> Vec<Value> {
    out.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect()
}

#[tokio::test]
async fn token_mints_for_a_sub_with_roles_and_a_lifetime() {
    let platform = Platform::start().await;
    let cli = Cli::new(&platform, "unused").without("LONGRUN_TOKEN");
    let minted = cli
        .json(
            0,
            &[
                "token",
                "--sub",
                "erin",
                "--roles",
                "admin,ops",
                "--ttl",
                "90s",
            ],
        )
        .await;
    assert_eq!(minted["sub"], "erin");
    assert_eq!(minted["roles"], json!(["admin", "ops"]));
    assert!(
        minted["expires_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
    let verifier = Verifier::new(&JwtConfig {
        secret: SECRET.into(),
        ..platform.config.jwt.clone()
    });
    let principal = verifier
        .verify(minted["token"].as_str().expect("a token"))
        .expect("the platform accepts it");
    assert_eq!(principal.owner, "erin");
    assert!(principal.admin);
    let lifetime = principal.expires_at - unix_now();
    assert!((80..=100).contains(&lifetime), "about 90 s: {lifetime}");

    // The bare token on stdout, usable as LONGRUN_TOKEN at once.
    let bare = cli.expect(0, &["token", "--sub", "erin"]).await;
    let as_erin = cli.clone_with_token(bare.trim());
    let none = as_erin.json(0, &["list"]).await;
    assert_eq!(
        none,
        json!({"operations": [], "next_cursor": null}),
        "nothing yet"
    );

    let no_secret = Cli::new(&platform, "x").without("LONGRUN_JWT_SECRET");
    let err = no_secret.error(4, &["token", "--sub", "erin"]).await;
    assert!(err.contains("LONGRUN_JWT_SECRET"), "{err}");
    let zero = cli.run(&["token", "--sub", "erin", "--ttl", "0s"]).await;
    assert_exit(&zero, 4, &["token --ttl 0s"]);
    assert!(String::from_utf8_lossy(&zero.stderr).contains("at least 1s"));
    platform.stop().await;
}

#[tokio::test]
async fn start_takes_its_input_as_text_a_file_or_stdin_and_prints_the_id() {
    let platform = Platform::start().await;
    let cli = Cli::new(&platform, "fred");
    let client = platform.client("fred");

    let id = cli
        .expect(
            0,
            &["start", "demo.sleep", r#"{"duration_ms":0,"steps":1}"#],
        )
        .await;
    let id = id.trim();
    assert!(
        longrun_shared::store::transitions::is_valid_id(id),
        "only the id: {id}"
    );
    assert_eq!(client.get(id).await.expect("exists").kind, "demo.sleep");

    let dir = tempfile_dir();
    let file = dir.join("input.json");
    std::fs::write(&file, r#"{"duration_ms": 0, "steps": 2}"#).expect("write");
    let at = format!("@{}", file.display());
    let started = cli.json(0, &["start", "demo.sleep", &at]).await;
    assert_eq!(started["kind"], "demo.sleep");
    assert_eq!(started["status"], "queued");
    assert_eq!(started["done"], false);
    assert_eq!(started["seq"], 1);
    let from_file = started["id"].as_str().expect("id");
    let done = client
        .wait(from_file, Duration::from_secs(10))
        .await
        .expect("done");
    assert_eq!(done.result["slept_ms"], 0);

    let piped = run_with_stdin(
        LONGRUN,
        &cli.env,
        &["start", "demo.sleep", "-", "--json", "--max-attempts", "5"],
        r#"{"duration_ms": 0, "steps": 3}"#,
    )
    .await;
    assert_exit(&piped, 0, &["start", "-"]);
    let started: Value = serde_json::from_slice(&piped.stdout).expect("json");
    assert_eq!(started["max_attempts"], 5, "options reach the api");

    // An idempotency key makes a repeat return the first operation.
    let first = cli
        .expect(
            0,
            &["start", "demo.sleep", "{}", "--idempotency-key", "k-1"],
        )
        .await;
    let again = cli
        .run(&["start", "demo.sleep", "{}", "--idempotency-key", "k-1"])
        .await;
    assert_exit(&again, 0, &["start again"]);
    assert_eq!(String::from_utf8_lossy(&again.stdout), first);
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    platform.stop().await;
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("longrun-cli-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

#[tokio::test]
async fn reading_commands_print_text_and_json() {
    let platform = Platform::start().await;
    let cli = Cli::new(&platform, "gina");
    let client = platform.client("gina");
    let sleep = start(&client, "demo.sleep", json!({"duration_ms": 0, "steps": 2})).await;
    let parent = start(
        &client,
        "demo.fanout",
        json!({"children": 3, "child_duration_ms": 0}),
    )
    .await;
    for id in [&sleep, &parent] {
        let done = client
            .wait(id, Duration::from_secs(15))
            .await
            .expect("done");
        assert_eq!(done.status, Status::Succeeded);
    }

    // status
    let text = cli.expect(0, &["status", &parent]).await;
    assert!(text.contains(&format!("id        {parent}")), "{text}");
    assert!(text.contains("status    succeeded"), "{text}");
    assert!(text.contains("children  children: 3 total"), "{text}");
    let resource = cli.json(0, &["status", &parent]).await;
    assert_eq!(resource["id"], parent.as_str());
    assert_eq!(resource["children"]["succeeded"], 3);
    assert_eq!(resource["done"], true);

    // list: newest first, filters, pages
    let page = cli.json(0, &["list"]).await;
    let ids: Vec<&str> = page["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .filter_map(|op| op["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [parent.as_str(), sleep.as_str()],
        "roots only, newest first"
    );
    assert_eq!(page["next_cursor"], Value::Null);
    let only = cli
        .json(
            0,
            &["list", "--kind", "demo.sleep", "--status", "succeeded"],
        )
        .await;
    assert_eq!(only["operations"].as_array().map(Vec::len), Some(1));
    let first = cli.run(&["list", "--limit", "1"]).await;
    assert_exit(&first, 0, &["list --limit 1"]);
    let table = String::from_utf8_lossy(&first.stdout);
    assert!(table.starts_with("ID "), "a table: {table}");
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.contains(&parent) && table.contains("3/3"), "{table}");
    let more = String::from_utf8_lossy(&first.stderr);
    let cursor = more.trim().rsplit(' ').next().expect("a cursor").to_owned();
    assert!(more.starts_with("more: longrun list --cursor"), "{more}");
    let next = cli
        .json(0, &["list", "--limit", "1", "--cursor", &cursor])
        .await;
    assert_eq!(next["operations"][0]["id"], sleep.as_str());
    let bad_status = cli.run(&["list", "--status", "done"]).await;
    assert_exit(&bad_status, 4, &["list --status done"]);
    assert!(String::from_utf8_lossy(&bad_status.stderr).contains("expected queued, running"));

    // events: the whole log, in order
    let events = cli.json(0, &["events", &sleep]).await;
    let log = events["events"].as_array().expect("events");
    let seqs: Vec<u64> = log.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let last = client.get(&sleep).await.expect("read").seq;
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    assert_eq!(events["next_seq"], last);
    assert_eq!(log[0]["type"], "created");
    assert_eq!(log[0]["operation_id"], sleep.as_str());
    let tail = cli
        .json(0, &["events", &sleep, "--after-seq", "2", "--limit", "1"])
        .await;
    assert_eq!(tail["events"][0]["seq"], 3);
    let text = cli.expect(0, &["events", &sleep]).await;
    assert_eq!(text.lines().count() as u64, last);
    assert!(
        text.lines().last().is_some_and(|l| l.contains("succeeded")),
        "{text}"
    );

    // children
    let children = cli.json(0, &["children", &parent]).await;
    let kids = children["operations"].as_array().expect("children");
    assert_eq!(kids.len(), 3);
    assert!(kids.iter().all(|kid| kid["parent_id"] == parent.as_str()));
    let table = cli.expect(0, &["children", &parent]).await;
    assert_eq!(table.lines().count(), 4, "{table}");

    // kinds
    let kinds = cli.json(0, &["kinds"]).await;
    let sleep_kind = kinds["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .find(|k| k["kind"] == "demo.sleep")
        .expect("demo.sleep is listed");
    assert_eq!(sleep_kind["input_schema"]["type"], "object");
    let text = cli.expect(0, &["kinds", "demo.sleep"]).await;
    assert!(
        text.contains("duration_ms") && text.contains("0..3600000"),
        "{text}"
    );
    assert!(text.contains("input schema:"), "{text}");
    let err = cli.error(4, &["kinds", "demo.nap"]).await;
    assert!(err.contains("no kind `demo.nap`"), "{err}");
    platform.stop().await;
}

#[tokio::test]
async fn wait_tells_the_outcome_by_its_exit_code() {
    let platform = Platform::start().await;
    let cli = Cli::new(&platform, "hana");
    let client = platform.client("hana");
    let ok = start(
        &client,
        "demo.sleep",
        json!({"duration_ms": 200, "steps": 2}),
    )
    .await;
    let out = cli.expect(0, &["wait", &ok]).await;
    assert!(out.starts_with("succeeded in "), "{out}");
    assert!(out.contains(r#"{"slept_ms":200}"#), "{out}");

    let failing = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 0, "fail_times": 5}),
            &StartOptions::from(StartParams {
                max_attempts: Some(1),
                ..StartParams::default()
            }),
        )
        .await
        .expect("started")
        .id;
    let out = cli.expect(1, &["wait", &failing]).await;
    assert!(out.starts_with("failed in "), "{out}");
    let failed = cli.json(1, &["wait", &failing]).await;
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"]["code"].is_string());

    let slow = start(
        &client,
        "demo.sleep",
        json!({"duration_ms": 60000, "steps": 60}),
    )
    .await;
    let out = cli.expect(3, &["wait", &slow, "--timeout", "300ms"]).await;
    assert!(out.starts_with("timed out after 300ms: "), "{out}");
    let waiting = cli.json(3, &["wait", &slow, "--timeout", "100ms"]).await;
    assert_eq!(waiting["done"], false);

    client.cancel(&slow).await.expect("cancelled");
    let out = cli.expect(2, &["wait", &slow]).await;
    assert!(out.starts_with("cancelled"), "{out}");
    platform.stop().await;
}

#[tokio::test]
async fn cancel_and_delete_explain_what_they_cannot_do() {
    let platform = Platform::start().await;
    let cli = Cli::new(&platform, "ines");
    let client = platform.client("ines");
    let parent = start(
        &client,
        "demo.fanout",
        json!({"children": 4, "child_duration_ms": 60000}),
    )
    .await;

    let err = cli.error(4, &["delete", &parent]).await;
    assert!(
        err.contains("cannot delete") && err.contains("longrun cancel"),
        "{err}"
    );

    let cancelled = cli.json(0, &["cancel", &parent]).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["done"], true);
    let err = cli.error(4, &["cancel", &parent]).await;
    assert!(err.contains("nothing to cancel"), "{err}");

    let deleted = cli.json(0, &["delete", &parent]).await;
    assert_eq!(deleted, json!({"id": parent, "deleted": true}));
    let err = cli.error(4, &["status", &parent]).await;
    assert!(
        err.contains("Not found") && err.contains("longrun list"),
        "{err}"
    );

    let other = start(&client, "demo.sleep", json!({"duration_ms": 60000})).await;
    let out = cli.expect(0, &["cancel", &other]).await;
    assert_eq!(out.trim(), format!("cancelled {other}"));
    let out = cli.expect(0, &["delete", &other]).await;
    assert_eq!(out.trim(), format!("deleted {other}"));
    platform.stop().await;
}

#[tokio::test]
async fn status_watch_polls_to_the_outcome() {
    let platform = Platform::start().await;
    let cli = Cli::new(&platform, "jade");
    let client = platform.client("jade");
    let id = start(
        &client,
        "demo.sleep",
        json!({"duration_ms": 1500, "steps": 3}),
    )
    .await;
    let out = cli.expect(0, &["status", &id, "--watch"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with(&id), "the state first: {out}");
    assert!(lines.len() >= 3, "a line per change seen: {out}");
    assert!(
        lines.last().is_some_and(|l| l.starts_with("succeeded in ")),
        "{out}"
    );
    assert!(!out.contains('\u{1b}'), "no terminal codes off a terminal");

    let id = start(
        &client,
        "demo.sleep",
        json!({"duration_ms": 1200, "steps": 3}),
    )
    .await;
    let out = cli.expect(0, &["status", &id, "--watch", "--json"]).await;
    let states = ndjson(&out);
    assert!(states.iter().all(|s| s["id"] == id.as_str()));
    let seqs: Vec<u64> = states.iter().filter_map(|s| s["seq"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "a resource per change: {seqs:?}"
    );
    assert_eq!(
        states.last().map(|s| s["status"].clone()),
        Some(json!("succeeded"))
    );

    let failing = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 0, "fail_times": 5}),
            &StartOptions::from(StartParams {
                max_attempts: Some(1),
                ..StartParams::default()
            }),
        )
        .await
        .expect("started")
        .id;
    cli.expect(1, &["status", &failing, "--watch"]).await;
    platform.stop().await;
}

#[tokio::test]
async fn start_watch_follows_to_the_outcome_in_lines_or_ndjson() {
    let platform = Platform::start().await;
    let cli = Cli::new(&platform, "kim");
    let output = cli
        .run(&[
            "start",
            "demo.sleep",
            r#"{"duration_ms":400,"steps":4}"#,
            "--watch",
        ])
        .await;
    assert_exit(&output, 0, &["start --watch"]);
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("started "));
    assert!(
        out.contains("progress") && out.contains("100.0% step 4/4"),
        "{out}"
    );
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("succeeded in ")),
        "{out}"
    );

    let out = cli
        .expect(
            0,
            &[
                "start",
                "demo.sleep",
                r#"{"duration_ms":300,"steps":3}"#,
                "--watch",
                "--json",
            ],
        )
        .await;
    let events = ndjson(&out);
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every event once: {out}"
    );
    assert_eq!(events[0]["type"], "created");
    assert_eq!(
        events.last().map(|e| e["type"].clone()),
        Some(json!("succeeded"))
    );

    let failed = cli
        .run(&[
            "start",
            "demo.fanout",
            r#"{"children":3,"child_duration_ms":0,"fail_children":[1]}"#,
            "--watch",
        ])
        .await;
    assert_exit(&failed, 1, &["start --watch failing"]);
    let out = String::from_utf8_lossy(&failed.stdout);
    assert!(
        out.lines().last().is_some_and(|l| l.starts_with("failed")),
        "{out}"
    );
    platform.stop().await;
}

#[tokio::test]
async fn usage_errors_exit_4_with_one_clear_line() {
    let platform = Platform::start().await;
    let cli = Cli::new(&platform, "lena");
    let err = cli.error(4, &["status", "nope"]).await;
    assert!(err.contains("`nope` is not an operation id"), "{err}");
    let err = cli.error(4, &["start", "sleep"]).await;
    assert!(err.contains("module.operation"), "{err}");
    let err = cli.error(4, &["start", "demo.nap"]).await;
    assert!(
        err.contains("Unknown operation kind") && err.contains("longrun kinds"),
        "{err}"
    );
    let err = cli
        .error(4, &["start", "demo.sleep", r#"{"steps":0}"#])
        .await;
    assert!(
        err.contains("/steps") && err.contains("longrun kinds demo.sleep"),
        "{err}"
    );
    let err = cli.error(4, &["start", "demo.sleep", "{steps:1}"]).await;
    assert!(err.contains("not valid JSON"), "{err}");
    let err = cli
        .error(4, &["start", "demo.sleep", "@/no/such.json"])
        .await;
    assert!(err.contains("/no/such.json"), "{err}");
    let missing = "0193a3f6-0000-7000-8000-000000000000";
    for command in ["status", "watch", "wait", "cancel", "events", "children"] {
        let err = cli.error(4, &[command, missing]).await;
        assert!(err.contains("Not found"), "{command}: {err}");
    }
    // clap's own errors: the same exit code
    let output = cli.run(&["list", "--limit", "0"]).await;
    assert_exit(&output, 4, &["list --limit 0"]);
    let output = cli.run(&["frobnicate"]).await;
    assert_exit(&output, 4, &["frobnicate"]);
    platform.stop().await;
}

#[tokio::test]
async fn auth_errors_exit_6_and_say_how_to_get_a_token() {
    let platform = Platform::start().await;
    let cli = Cli::new(&platform, "mia");
    let id = start(
        &platform.client("mia"),
        "demo.sleep",
        json!({"duration_ms": 0}),
    )
    .await;

    let err = cli
        .clone()
        .without("LONGRUN_TOKEN")
        .error(6, &["list"])
        .await;
    assert!(
        err.contains("no token") && err.contains("LONGRUN_TOKEN"),
        "{err}"
    );

    let err = cli
        .clone_with_token("garbage")
        .error(6, &["status", &id])
        .await;
    assert!(err.contains("refused the token"), "{err}");

    let expired = mint_claims(
        SECRET,
        &Claims {
            sub: "mia".into(),
            exp: unix_now() - 600,
            nbf: None,
            iat: None,
            iss: None,
            aud: None,
            roles: vec![],
        },
    )
    .expect("mints");
    let expired_cli = cli.clone_with_token(&expired);
    for args in [
        vec!["list"],
        vec!["watch", id.as_str()],
        vec!["wait", id.as_str()],
    ] {
        let err = expired_cli.error(6, &args).await;
        assert!(err.contains("the token for `mia` expired 10m ago"), "{err}");
        assert!(
            err.contains("export LONGRUN_TOKEN=$(longrun token --sub mia)"),
            "{err}"
        );
    }

    let forged = longrun_shared::auth::mint(
        "another-secret-entirely-0123456789",
        &longrun_shared::auth::TokenRequest {
            sub: "mia",
            roles: vec![],
            ttl: Duration::from_secs(60),
            issuer: None,
            audience: None,
        },
    )
    .expect("mints");
    let err = cli
        .clone_with_token(&forged)
        .error(6, &["status", &id])
        .await;
    assert!(
        err.contains("bad signature") && err.contains("--sub mia"),
        "{err}"
    );

    // Another owner's operation does not exist for this one.
    let err = Cli::new(&platform, "noah").error(4, &["status", &id]).await;
    assert!(err.contains("Not found"), "{err}");
    platform.stop().await;
}

impl Cli {
    fn clone_with_token(&self, token: &str) -> Cli {
        self.clone().with("LONGRUN_TOKEN", token)
    }
}

#[tokio::test]
async fn connection_errors_exit_5_at_once() {
    let platform = Platform::start().await;
    let id = start(
        &platform.client("olga"),
        "demo.sleep",
        json!({"duration_ms": 60000}),
    )
    .await;
    let closed = format!("http://127.0.0.1:{}", longrun_tests::cli::free_port());
    let nowhere = Cli::new(&platform, "olga").with("LONGRUN_URL", &closed);
    let started = std::time::Instant::now();
    for args in [
        vec!["list"],
        vec!["start", "demo.sleep"],
        vec!["status", id.as_str()],
        vec!["status", id.as_str(), "--watch"],
        vec!["wait", id.as_str()],
        vec!["kinds"],
    ] {
        let err = nowhere.error(5, &args).await;
        assert!(err.contains(&format!("cannot reach {closed}")), "{err}");
        assert!(err.contains("longrun dev"), "{err}");
    }
    // The api answers, the gateway is not there.
    let closed_ws = format!("ws://127.0.0.1:{}", longrun_tests::cli::free_port());
    let no_gateway = Cli::new(&platform, "olga").with("LONGRUN_WS_URL", &closed_ws);
    let err = no_gateway.error(5, &["watch", &id]).await;
    assert!(err.contains(&closed_ws), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a wrong address fails fast, not after retrying"
    );
    platform.stop().await;
}

#[tokio::test]
async fn settings_come_from_flags_then_env_then_the_config_file() {
    let platform = Platform::start().await;
    let home = tempfile_dir();
    let config = home.join(".config").join("longrun");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::write(
        config.join("config.toml"),
        format!(
            "url = \"{}\"\nws_url = \"ws://127.0.0.1:1\"\ntoken = \"{}\"\n",
            platform.api_url,
            token("pia")
        ),
    )
    .expect("write");
    let home = home.display().to_string();
    let cli = Cli::new(&platform, "x")
        .without("LONGRUN_TOKEN")
        .without("LONGRUN_URL")
        .with("HOME", &home);

    // Everything from the file: a working platform, as pia.
    let shown = cli.json(0, &["config"]).await;
    assert_eq!(shown["url"]["value"], platform.api_url.as_str());
    assert!(
        shown["url"]["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("file "))
    );
    assert_eq!(
        shown["ws_url"]["source"], "env LONGRUN_WS_URL",
        "env beats the file"
    );
    assert_eq!(shown["token"]["sub"], "pia");
    assert_eq!(shown["config_file"]["exists"], true);
    let id = cli
        .expect(0, &["start", "demo.sleep", r#"{"duration_ms":0}"#])
        .await;
    let operation = platform.client("pia").get(id.trim()).await.expect("pia's");
    assert_eq!(operation.owner, "pia");

    // The environment beats the file, a flag beats the environment.
    let env_token = cli.clone_with_token(&token("quinn"));
    let shown = env_token.json(0, &["config"]).await;
    assert_eq!(shown["token"]["sub"], "quinn");
    assert_eq!(shown["token"]["source"], "env LONGRUN_TOKEN");
    let flag_token = token("rosa");
    let shown = env_token
        .json(
            0,
            &[
                "config",
                "--token",
                &flag_token,
                "--url",
                "http://127.0.0.1:9",
            ],
        )
        .await;
    assert_eq!(shown["token"]["sub"], "rosa");
    assert_eq!(shown["token"]["source"], "flag --token");
    assert_eq!(shown["url"]["value"], "http://127.0.0.1:9");
    let text = env_token.expect(0, &["config"]).await;
    assert!(text.contains("token     for `quinn`"), "{text}");
    assert!(text.contains("(env LONGRUN_TOKEN)"), "{text}");

    let broken = Cli::new(&platform, "x").with("HOME", &home);
    std::fs::write(
        std::path::Path::new(&home).join(".config/longrun/config.toml"),
        "url = 3\n",
    )
    .expect("write");
    let err = broken.error(4, &["list"]).await;
    assert!(err.contains("config.toml"), "{err}");
    platform.stop().await;
}

#[tokio::test]
async fn help_documents_exit_codes_and_completions_cover_the_commands() {
    let platform = Platform::start().await;
    let cli = Cli::new(&platform, "sam");
    let help = cli.expect(0, &["--help"]).await;
    for line in [
        "0    succeeded",
        "1    the operation failed",
        "2    the operation was cancelled",
        "3    timed out waiting",
        "4    usage error",
        "5    connection error",
        "6    authentication error",
        "130  interrupted",
        "LONGRUN_URL",
    ] {
        assert!(help.contains(line), "--help mentions {line}: {help}");
    }
    let version = cli.expect(0, &["--version"]).await;
    assert!(version.starts_with("longrun "), "{version}");
    for shell in ["bash", "zsh", "fish"] {
        let script = cli.expect(0, &["completions", shell]).await;
        for command in ["start", "watch", "wait", "cancel", "kinds", "json"] {
            assert!(script.contains(command), "{shell} completes {command}");
        }
    }
    let output = cli.run(&["completions", "tcsh"]).await;
    assert_exit(&output, 4, &["completions tcsh"]);
    platform.stop().await;
}
