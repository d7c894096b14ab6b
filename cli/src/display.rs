//! How `watch` and `status --watch` show an operation: an indicatif bar on
//! a terminal (plus one summary line of children for a parent), plain lines
//! when stdout is not a terminal, NDJSON with `--json`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use longrun_client::{Event, EventType};
use longrun_shared::model::{ChildCounts, Operation, Status};

use crate::failure::exit;

pub enum Display {
    Bar {
        bar: ProgressBar,
        children: ProgressBar,
        _multi: MultiProgress,
    },
    Plain,
    Json,
}

impl Display {
    pub fn new(json: bool, operation: &Operation) -> Display {
        if json {
            return Display::Json;
        }
        if !std::io::stdout().is_terminal() {
            return Display::Plain;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let bar = multi.add(ProgressBar::new(1000));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:40.cyan/blue}] {percent_precise:>7}% {elapsed_precise} eta {eta} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{} {}", operation.kind, short(&operation.id)));
        bar.enable_steady_tick(Duration::from_millis(200));
        let children = multi.add(ProgressBar::new(0));
        children.set_style(
            ProgressStyle::with_template("  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let display = Display::Bar {
            bar,
            children,
            _multi: multi,
        };
        display.show_state(operation);
        display
    }

    /// Shows the operation's current state (from a GET or a `subscribed` frame).
    pub fn show_state(&self, operation: &Operation) {
        match self {
            Display::Bar { bar, children, .. } => {
                bar.set_position((operation.progress.percent * 10.0) as u64);
                bar.set_message(operation.progress.message.clone().unwrap_or_default());
                if operation.children.total > 0 {
                    children.set_message(summary(&operation.children));
                }
            }
            Display::Plain => {
                println!(
                    "{} {} {:.1}% {}",
                    operation.id,
                    operation.status,
                    operation.progress.percent,
                    operation.progress.message.as_deref().unwrap_or("")
                );
            }
            Display::Json => print_json(&operation),
        }
    }

    pub fn show_event(&self, event: &Event) {
        match self {
            Display::Json => print_json(event),
            Display::Plain => {
                let detail = match event.event_type {
                    EventType::Progress => format!(
                        "{:.1}% {}",
                        event.data["percent"].as_f64().unwrap_or(0.0),
                        event.data["message"].as_str().unwrap_or("")
                    ),
                    _ => compact(&event.data),
                };
                println!(
                    "{:>5} {:<10} {detail}",
                    event.seq,
                    type_name(event.event_type)
                );
            }
            Display::Bar { bar, children, .. } => match event.event_type {
                EventType::Progress => {
                    if let Some(percent) = event.data["percent"].as_f64() {
                        bar.set_position((percent * 10.0) as u64);
                    }
                    if let Some(message) = event.data["message"].as_str() {
                        bar.set_message(message.to_owned());
                    }
                    if let Ok(counts) = serde_json::from_value::<ChildCounts>(
                        event.data["data"]["children"].clone(),
                    ) {
                        children.set_message(summary(&counts));
                    }
                }
                EventType::Retrying => bar.println(format!("retrying: {}", compact(&event.data))),
                EventType::Started => bar.set_message(format!("attempt {}", event.data["attempt"])),
                _ => {}
            },
        }
    }

    /// Shows the final state; returns the exit code it means.
    pub fn finish(&self, operation: &Operation) -> u8 {
        let code = outcome_code(operation.status);
        match self {
            Display::Json => {}
            Display::Bar { bar, children, .. } => {
                if operation.status == Status::Succeeded {
                    bar.set_position(1000);
                }
                if operation.children.total > 0 {
                    children.set_message(summary(&operation.children));
                }
                children.finish();
                bar.finish();
                println!("{}", final_line(operation));
            }
            Display::Plain => println!("{}", final_line(operation)),
        }
        code
    }

    pub fn abandon(&self) {
        if let Display::Bar { bar, children, .. } = self {
            children.abandon();
            bar.abandon();
        }
    }
}

pub fn outcome_code(status: Status) -> u8 {
    match status {
        Status::Succeeded => exit::OK,
        Status::Failed => exit::FAILED,
        Status::Cancelled => exit::CANCELLED,
        Status::Queued | Status::Running => exit::TIMED_OUT,
    }
}

pub fn final_line(operation: &Operation) -> String {
    let elapsed = match (&operation.started_at, &operation.finished_at) {
        (Some(start), Some(end)) => match (
            humantime::parse_rfc3339(start),
            humantime::parse_rfc3339(end),
        ) {
            (Ok(start), Ok(end)) => end
                .duration_since(start)
                .map(|d| format!(" in {:.1}s", d.as_secs_f64()))
                .unwrap_or_default(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    match operation.status {
        Status::Succeeded => format!("succeeded{elapsed}: {}", compact(&operation.result)),
        Status::Failed => match &operation.error {
            Some(error) => format!("failed{elapsed}: {}: {}", error.code, error.message),
            None => format!("failed{elapsed}"),
        },
        Status::Cancelled => format!("cancelled{elapsed}"),
        other => format!("{other}"),
    }
}

fn summary(counts: &ChildCounts) -> String {
    format!(
        "children: {} total, {} queued, {} running, {} succeeded, {} failed, {} cancelled",
        counts.total,
        counts.queued,
        counts.running,
        counts.succeeded,
        counts.failed,
        counts.cancelled
    )
}

fn short(id: &str) -> &str {
    id.get(id.len().saturating_sub(12)..).unwrap_or(id)
}

fn type_name(event_type: EventType) -> String {
    serde_json::to_value(event_type)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One-line JSON, cut to a readable length.
pub fn compact(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 200 {
        let cut: String = text.chars().take(197).collect();
        format!("{cut}...")
    } else {
        text
    }
}

pub fn print_json<T: serde::Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, value);
    let _ = writeln!(out);
    let _ = out.flush();
}
