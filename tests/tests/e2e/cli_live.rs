//! `longrun watch` as it runs: the progress bar in a real pseudo-terminal,
//! plain lines off a terminal, Ctrl-C, and NDJSON that survives gateway
//! restarts without a missing or repeated event.

use std::time::Duration;

use longrun_client::Status;
use longrun_tests::cli::{GatewayProcess, Running};
use longrun_tests::terminal::Terminal;
use longrun_tests::{Platform, eventually, token};
use serde_json::{Value, json};

use crate::LONGRUN;
use crate::cli::{Cli, assert_exit, start};

const LIMIT: Duration = Duration::from_secs(30);

fn terminal_env(platform: &Platform, sub: &str) -> Vec<(String, String)> {
    let mut env = platform.env();
    env.push(("LONGRUN_TOKEN".into(), token(sub)));
    env
}

#[tokio::test]
async fn watch_in_a_terminal_draws_a_bar_to_100_percent_and_the_final_line() {
    let platform = Platform::start().await;
    let client = platform.client("tara");
    let id = start(
        &client,
        "demo.sleep",
        json!({"duration_ms": 1500, "steps": 15}),
    )
    .await;
    let mut terminal = Terminal::spawn(LONGRUN, &terminal_env(&platform, "tara"), &["watch", &id]);
    terminal
        .wait_for_screen(LIMIT, "a bar part of the way", |screen| {
            screen.contains("demo.sleep") && screen.contains("% ") && !screen.contains("succeeded")
        })
        .await;
    assert_eq!(terminal.wait_exit(LIMIT).await, Some(0));
    let screen = terminal.screen();
    let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 2, "one bar, then the final line:\n{screen}");
    let short_id = &id[id.len() - 12..];
    assert!(
        lines[0].starts_with(&format!("demo.sleep {short_id} [")),
        "{screen}"
    );
    assert!(
        lines[0].contains("] 100.0%"),
        "the bar reached 100%:\n{screen}"
    );
    assert!(lines[0].contains("step 15/15"), "{screen}");
    assert!(
        lines[1].starts_with("succeeded in ") && lines[1].contains(r#"{"slept_ms":1500}"#),
        "{screen}"
    );
    let raw = terminal.raw_output();
    let redraws = raw.matches("\r\u{1b}[2K").count();
    assert!(
        redraws >= 3,
        "the bar is redrawn in place ({redraws} times)"
    );
    platform.stop().await;
}

#[tokio::test]
async fn a_parent_in_a_terminal_is_one_bar_and_one_summary_of_its_children() {
    let platform = Platform::start().await;
    let mut terminal = Terminal::spawn(
        LONGRUN,
        &terminal_env(&platform, "ugo"),
        &[
            "start",
            "demo.fanout",
            r#"{"children":200,"child_duration_ms":10}"#,
            "--watch",
        ],
    );
    assert_eq!(
        terminal.wait_exit(LIMIT).await,
        Some(0),
        "{}",
        terminal.screen()
    );
    let screen = terminal.screen();
    let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines[0].starts_with("started "), "{screen}");
    assert!(
        lines[1].starts_with("demo.fanout ") && lines[1].contains("] 100.0%"),
        "{screen}"
    );
    assert_eq!(
        lines[2].trim(),
        "children: 200 total, 0 queued, 0 running, 200 succeeded, 0 failed, 0 cancelled",
        "{screen}"
    );
    assert!(lines[3].starts_with("succeeded in "), "{screen}");
    assert_eq!(lines.len(), 4, "no bar per child:\n{screen}");
    assert!(
        !terminal.raw_output().contains("demo.sleep"),
        "no child was ever drawn"
    );
    platform.stop().await;
}

#[tokio::test]
async fn off_a_terminal_watch_prints_plain_lines() {
    let platform = Platform::start().await;
    let cli = Cli::new(&platform, "vera");
    let client = platform.client("vera");
    let id = start(
        &client,
        "demo.sleep",
        json!({"duration_ms": 600, "steps": 3}),
    )
    .await;
    let output = cli.run(&["watch", &id]).await;
    assert_exit(&output, 0, &["watch"]);
    let out = String::from_utf8(output.stdout).expect("utf8");
    assert!(
        !out.contains('\u{1b}') && !out.contains('\r'),
        "no terminal codes: {out:?}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with(&format!("{id} demo.sleep ")), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("progress") && l.contains("100.0% step 3/3")),
        "{out}"
    );
    assert!(lines.iter().any(|l| l.contains(" succeeded ")), "{out}");
    assert!(
        lines.last().is_some_and(|l| l.starts_with("succeeded in ")),
        "{out}"
    );

    // Watching a finished operation just tells its outcome.
    let again = cli.run(&["watch", &id]).await;
    assert_exit(&again, 0, &["watch again"]);
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("succeeded in ")),
        "{out}"
    );
    platform.stop().await;
}

#[tokio::test]
async fn ctrl_c_stops_watching_and_leaves_the_operation_running() {
    let platform = Platform::start().await;
    let client = platform.client("wes");
    let id = start(
        &client,
        "demo.sleep",
        json!({"duration_ms": 20000, "steps": 200}),
    )
    .await;
    let mut terminal = Terminal::spawn(LONGRUN, &terminal_env(&platform, "wes"), &["watch", &id]);
    terminal
        .wait_for_screen(LIMIT, "the bar moving", |screen| screen.contains("step "))
        .await;
    terminal.ctrl_c();
    assert_eq!(terminal.wait_exit(LIMIT).await, Some(130));
    let screen = terminal.screen();
    assert!(
        screen.contains(&format!("stopped watching {id}: it keeps running"))
            && screen.contains("(`longrun cancel "),
        "{screen}"
    );
    let after = client.get(&id).await.expect("read");
    assert!(!after.done, "Ctrl-C did not cancel it: {:?}", after.status);

    // With --cancel-on-interrupt it does (SIGINT from outside this time).
    let mut watching = Running::spawn(
        LONGRUN,
        &terminal_env(&platform, "wes"),
        &["watch", &id, "--cancel-on-interrupt"],
    );
    let first = watching.next_line(LIMIT).await.expect("the state line");
    assert!(first.starts_with(&id), "{first}");
    watching.signal("INT");
    let (code, _, stderr) = watching.finish(LIMIT).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("cancelled {id}")), "{stderr}");
    assert_eq!(
        client.get(&id).await.expect("read").status,
        Status::Cancelled
    );
    platform.stop().await;
}

/// Reads NDJSON events from `watching` until one has `seq` ≥ `until` or is terminal.
async fn read_events(watching: &mut Running, events: &mut Vec<Value>, until: u64) {
    loop {
        let line = watching.next_line(LIMIT).await.expect("more events");
        let event: Value = serde_json::from_str(&line).expect("NDJSON");
        let seq = event["seq"].as_u64().expect("seq");
        let terminal = matches!(
            event["type"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        );
        events.push(event);
        if seq >= until || terminal {
            return;
        }
    }
}

#[tokio::test]
async fn watch_json_survives_gateway_restarts_with_every_event_once() {
    let platform = Platform::builder().without_realtime().start().await;
    let client = platform.client("xena");
    let mut gateway = GatewayProcess::start(LONGRUN, &platform.env()).await;
    let mut env = terminal_env(&platform, "xena");
    env.retain(|(name, _)| name != "LONGRUN_WS_URL");
    env.push(("LONGRUN_WS_URL".into(), gateway.url()));

    let id = start(
        &client,
        "demo.sleep",
        json!({"duration_ms": 6000, "steps": 60}),
    )
    .await;
    let mut watching = Running::spawn(LONGRUN, &env, &["watch", &id, "--json"]);
    let mut events = Vec::new();
    read_events(&mut watching, &mut events, 5).await;

    // A deploy: SIGTERM closes every connection with 1001.
    gateway.stop().await;
    let seen = events.len() as u64;
    wait_for_progress(&client, &id, seen + 3).await;
    gateway.restart().await;
    read_events(&mut watching, &mut events, seen + 8).await;

    // A crash: SIGKILL, the connection just drops.
    gateway.kill().await;
    let seen = events.len() as u64;
    wait_for_progress(&client, &id, seen + 3).await;
    gateway.restart().await;

    let (code, rest, stderr) = watching.finish(LIMIT).await;
    assert_eq!(code, Some(0), "{stderr}");
    events.extend(
        rest.iter()
            .map(|line| serde_json::from_str(line).expect("NDJSON")),
    );
    let done = client.get(&id).await.expect("read");
    assert_eq!(done.status, Status::Succeeded);
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        (1..=done.seq).collect::<Vec<_>>(),
        "every event exactly once, in order, across two restarts"
    );
    assert_eq!(stderr.matches("reconnected").count(), 2, "{stderr}");
    assert!(stderr.contains("the gateway is restarting"), "{stderr}");
}

/// Waits until the operation logged events past `seq` (while no gateway runs).
async fn wait_for_progress(client: &longrun_client::Client, id: &str, seq: u64) {
    eventually(
        LIMIT,
        "the operation to go on without a gateway",
        || async {
            client
                .get(id)
                .await
                .ok()
                .filter(|op| op.seq >= seq)
                .map(|_| ())
        },
    )
    .await;
}
