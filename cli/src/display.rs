//! How `watch`, `start --watch` and `status --watch` show an operation as
//! it runs: on a terminal, an indicatif bar (percent, message, elapsed,
//! ETA) plus, for a parent, one summary line of its children — never a bar
//! per child; plain lines when stdout is not a terminal; NDJSON with
//! `--json` (events for `watch`, resources for `status --watch`).

use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use longrun_client::{ChildCounts, Event, EventType, Operation, Status, WatchUpdate};

use crate::output;
use crate::render::{
    children_summary, compact, event_line, final_line, outcome_code, progress_text,
};

/// The bar counts tenths of a percent.
const BAR_LENGTH: u64 = 1000;

/// A live view of one operation.
pub enum Live {
    Bar(Bars),
    Plain { last_seq: Option<u64> },
    Json { last_seq: Option<u64> },
}

pub struct Bars {
    multi: MultiProgress,
    bar: ProgressBar,
    children: Option<ProgressBar>,
    /// The operation's own message, restored after a connection notice.
    message: String,
}

impl Live {
    /// A view fitting the output: NDJSON, a bar on a terminal, else lines.
    /// Shows `operation`'s current state (except as NDJSON).
    pub fn new(json: bool, operation: &Operation) -> Live {
        if json {
            return Live::Json { last_seq: None };
        }
        if !std::io::stdout().is_terminal() {
            say!(
                "{} {} {} {}",
                operation.id,
                operation.kind,
                operation.status,
                progress_text(
                    operation.progress.percent,
                    operation.progress.message.as_deref()
                )
            );
            return Live::Plain {
                last_seq: Some(operation.seq),
            };
        }
        let mut live = Live::Bar(Bars::new(operation));
        live.state(operation);
        live
    }

    /// Shows a state read by polling (`status --watch`).
    pub fn state(&mut self, operation: &Operation) {
        match self {
            Live::Bar(bars) => {
                bars.set_percent(operation.progress.percent);
                bars.set_message(message_of(operation));
                if operation.children.total > 0 {
                    bars.set_children(&operation.children);
                }
            }
            Live::Plain { last_seq } => {
                if *last_seq != Some(operation.seq) {
                    *last_seq = Some(operation.seq);
                    say!(
                        "{} {}",
                        operation.status,
                        progress_text(
                            operation.progress.percent,
                            operation.progress.message.as_deref()
                        )
                    );
                }
            }
            Live::Json { last_seq } => {
                if *last_seq != Some(operation.seq) {
                    *last_seq = Some(operation.seq);
                    output::json(operation);
                }
            }
        }
    }

    /// Shows what the WebSocket brought.
    pub fn update(&mut self, update: &WatchUpdate) {
        match update {
            WatchUpdate::Event(event) => self.event(event),
            WatchUpdate::Disconnected { reason } => match self {
                Live::Bar(bars) => bars
                    .bar
                    .set_message(format!("connection lost ({reason}); reconnecting…")),
                _ => note!("connection lost ({reason}); reconnecting…"),
            },
            WatchUpdate::Reconnected => match self {
                Live::Bar(bars) => bars.bar.set_message(bars.message.clone()),
                _ => note!("reconnected; resuming after the last event seen"),
            },
            WatchUpdate::Notice { code, message } => match self {
                Live::Bar(bars) => bars.bar.println(format!("{code}: {message}")),
                _ => note!("{code}: {message}"),
            },
            _ => {}
        }
    }

    fn event(&mut self, event: &Event) {
        match self {
            Live::Json { .. } => output::json(event),
            Live::Plain { .. } => say!("{}", event_line(event)),
            Live::Bar(bars) => match event.event_type {
                EventType::Progress => {
                    if let Some(percent) = event.data["percent"].as_f64() {
                        bars.set_percent(percent);
                    }
                    if let Some(message) = event.data["message"].as_str() {
                        bars.set_message(message.to_owned());
                    }
                    if let Ok(counts) = serde_json::from_value::<ChildCounts>(
                        event.data["data"]["children"].clone(),
                    ) {
                        bars.set_children(&counts);
                    }
                }
                EventType::Started => {
                    bars.set_message(format!("attempt {} started", event.data["attempt"]));
                }
                EventType::Retrying => {
                    bars.bar
                        .println(format!("retrying: {}", compact(&event.data)));
                    bars.set_message("queued for a retry".to_owned());
                }
                _ => {}
            },
        }
    }

    /// Shows the final state; returns the exit code it means.
    pub fn finish(self, operation: &Operation) -> u8 {
        match self {
            Live::Json { .. } => {}
            Live::Bar(mut bars) => {
                if operation.status == Status::Succeeded {
                    bars.set_percent(100.0);
                } else {
                    bars.set_percent(operation.progress.percent);
                }
                bars.set_message(message_of(operation));
                if operation.children.total > 0 {
                    bars.set_children(&operation.children);
                }
                bars.stop(false);
                say!("{}", final_line(operation));
            }
            Live::Plain { .. } => say!("{}", final_line(operation)),
        }
        outcome_code(operation.status)
    }

    /// Leaves the display as it is (Ctrl-C, an error).
    pub fn abandon(self) {
        if let Live::Bar(bars) = self {
            bars.stop(true);
        }
    }
}

impl Bars {
    fn new(operation: &Operation) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let bar = multi.add(ProgressBar::new(BAR_LENGTH).with_elapsed(running_for(operation)));
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:40.cyan/blue}] {percent_1:>6} {elapsed_precise} eta {eta:<4} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "percent_1",
            |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{:.1}%", state.pos() as f64 / 10.0);
            },
        )
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{} {}", operation.kind, short(&operation.id)));
        bar.enable_steady_tick(Duration::from_millis(200));
        Bars {
            multi,
            bar,
            children: None,
            message: String::new(),
        }
    }

    fn set_percent(&self, percent: f64) {
        let position = (percent.clamp(0.0, 100.0) * 10.0).round() as u64;
        self.bar.set_position(position);
    }

    fn set_message(&mut self, message: String) {
        self.message.clone_from(&message);
        self.bar.set_message(message);
    }

    /// The one summary line of a parent's children, added when first known.
    fn set_children(&mut self, counts: &ChildCounts) {
        let line = self.children.get_or_insert_with(|| {
            let line = self.multi.add(ProgressBar::new(0));
            line.set_style(
                ProgressStyle::with_template("  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            line
        });
        line.set_message(children_summary(counts));
    }

    /// Ends the bars: finished (they stay as drawn) or abandoned (Ctrl-C,
    /// an error: they stay at their last state).
    /// indicatif leaves the cursor at the end of its last (full-width)
    /// line; a newline makes what follows a line of its own rather than a
    /// soft wrap of the bar's.
    fn stop(self, abandon: bool) {
        for bar in [Some(&self.bar), self.children.as_ref()]
            .into_iter()
            .flatten()
        {
            if abandon {
                bar.abandon();
            } else {
                bar.finish();
            }
        }
        say!("");
    }
}

/// What the bar's message says for a state.
fn message_of(operation: &Operation) -> String {
    match (operation.status, operation.progress.message.as_deref()) {
        (Status::Queued, _) => "queued".to_owned(),
        (_, Some(message)) => message.to_owned(),
        (status, None) => status.to_string(),
    }
}

/// How long the operation has been running, so the bar's clock is its.
fn running_for(operation: &Operation) -> Duration {
    operation
        .started_at
        .as_deref()
        .and_then(|at| humantime::parse_rfc3339(at).ok())
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .unwrap_or_default()
}

fn short(id: &str) -> &str {
    id.get(id.len().saturating_sub(12)..).unwrap_or(id)
}
