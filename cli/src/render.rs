//! Operations, events and kinds as text for a person (tables, details,
//! the final line). `--json` output does not come through here.

use longrun_client::{ChildCounts, Event, EventType, KindSpec, Operation, Status};
use serde_json::Value;

use crate::failure::exit;

/// The exit code an operation's status means (not done: timed out).
pub fn outcome_code(status: Status) -> u8 {
    match status {
        Status::Succeeded => exit::OK,
        Status::Failed => exit::FAILED,
        Status::Cancelled => exit::CANCELLED,
        Status::Queued | Status::Running => exit::TIMED_OUT,
    }
}

/// `succeeded in 3.0s: {"slept_ms":3000}`, `failed in 0.2s: code: message`, …
pub fn final_line(operation: &Operation) -> String {
    let elapsed = run_time(operation)
        .map(|seconds| format!(" in {seconds:.1}s"))
        .unwrap_or_default();
    match operation.status {
        Status::Succeeded => format!("succeeded{elapsed}: {}", compact(&operation.result)),
        Status::Failed => match &operation.error {
            Some(error) => format!("failed{elapsed}: {}: {}", error.code, error.message),
            None => format!("failed{elapsed}"),
        },
        Status::Cancelled => format!("cancelled{elapsed}"),
        other => format!(
            "{other} ({})",
            progress_text(
                operation.progress.percent,
                operation.progress.message.as_deref()
            )
        ),
    }
}

/// Seconds from start (or creation) to finish.
fn run_time(operation: &Operation) -> Option<f64> {
    let start = operation
        .started_at
        .as_deref()
        .unwrap_or(&operation.created_at);
    let end = operation.finished_at.as_deref()?;
    let start = humantime::parse_rfc3339(start).ok()?;
    let end = humantime::parse_rfc3339(end).ok()?;
    end.duration_since(start).ok().map(|d| d.as_secs_f64())
}

/// `42.5% step 17/40`
pub fn progress_text(percent: f64, message: Option<&str>) -> String {
    match message.filter(|m| !m.is_empty()) {
        Some(message) => format!("{percent:.1}% {message}"),
        None => format!("{percent:.1}%"),
    }
}

/// `children: 200 total, 10 queued, 16 running, 170 succeeded, 4 failed, 0 cancelled`
pub fn children_summary(counts: &ChildCounts) -> String {
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

/// The lines of `longrun status ID`.
pub fn operation_details(op: &Operation) -> Vec<String> {
    let mut lines = vec![
        format!("id        {}", op.id),
        format!("kind      {}", op.kind),
        format!("status    {}", op.status),
        format!(
            "progress  {}",
            progress_text(op.progress.percent, op.progress.message.as_deref())
        ),
        format!("attempt   {}/{}", op.attempt, op.max_attempts),
    ];
    if let Some(parent) = &op.parent_id {
        lines.push(format!("parent    {parent}"));
    }
    if op.children.total > 0 {
        lines.push(format!("children  {}", children_summary(&op.children)));
    }
    lines.push(format!("owner     {}", op.owner));
    lines.push(format!("created   {}", op.created_at));
    if op.done {
        lines.push(format!("outcome   {}", final_line(op)));
    }
    lines
}

/// One line per event: `    7  2026-…Z  progress    42.5% step 17/40`.
pub fn event_line(event: &Event) -> String {
    let detail = match event.event_type {
        EventType::Progress => progress_text(
            event.data["percent"].as_f64().unwrap_or(0.0),
            event.data["message"].as_str(),
        ),
        _ => compact(&event.data),
    };
    format!(
        "{:>5}  {}  {:<14}  {detail}",
        event.seq,
        event.at,
        type_name(event.event_type)
    )
}

/// An event type's wire name.
pub fn type_name(event_type: EventType) -> &'static str {
    match event_type {
        EventType::Created => "created",
        EventType::Started => "started",
        EventType::Progress => "progress",
        EventType::Retrying => "retrying",
        EventType::Succeeded => "succeeded",
        EventType::Failed => "failed",
        EventType::Cancelled => "cancelled",
        EventType::ChildFinished => "child_finished",
    }
}

/// A table of operations, columns as wide as their widest cell; an OWNER
/// column when they are not all the same owner's.
pub fn operations_table(operations: &[Operation]) -> Vec<String> {
    let several_owners = operations.iter().any(|op| op.owner != operations[0].owner);
    let mut rows: Vec<Vec<String>> = vec![
        ["ID", "KIND", "STATUS", "PROGRESS", "CHILDREN", "CREATED"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for op in operations {
        let children = if op.children.total > 0 {
            format!("{}/{}", op.children.finished(), op.children.total)
        } else {
            "-".to_owned()
        };
        rows.push(vec![
            op.id.clone(),
            op.kind.clone(),
            op.status.as_str().to_owned(),
            format!("{:.1}%", op.progress.percent),
            children,
            op.created_at.get(..19).unwrap_or(&op.created_at).to_owned() + "Z",
        ]);
    }
    if several_owners {
        rows[0].push("OWNER".into());
        for (row, op) in rows.iter_mut().skip(1).zip(operations) {
            row.push(op.owner.clone());
        }
    }
    align(&rows)
}

fn align(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

/// A kind: its name, description and one line per input field; with
/// `full`, its defaults and whole input schema too.
pub fn kind_lines(spec: &KindSpec, full: bool) -> Vec<String> {
    let mut lines = vec![spec.kind.clone(), format!("  {}", spec.description)];
    let required: Vec<&str> = spec.input_schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(properties) = spec.input_schema["properties"].as_object() {
        let rows: Vec<Vec<String>> = properties
            .iter()
            .map(|(name, schema)| {
                let marked = if required.contains(&name.as_str()) {
                    format!("{name} (required)")
                } else {
                    name.clone()
                };
                vec![
                    marked,
                    type_text(schema),
                    range_text(schema),
                    schema
                        .get("default")
                        .map(|d| format!("default {d}"))
                        .unwrap_or_default(),
                    schema["description"].as_str().unwrap_or("").to_owned(),
                ]
            })
            .collect();
        lines.push("  input:".to_owned());
        lines.extend(align(&rows).into_iter().map(|row| format!("    {row}")));
    }
    if full {
        let defaults = &spec.defaults;
        lines.push(format!(
            "  defaults: max_attempts {}, timeout {}, backoff {} from {} ms to {} ms",
            defaults.max_attempts,
            if defaults.timeout_ms == 0 {
                "none".to_owned()
            } else {
                format!("{} ms", defaults.timeout_ms)
            },
            compact(&serde_json::to_value(defaults.backoff.kind).unwrap_or_default())
                .trim_matches('"'),
            defaults.backoff.base_ms,
            defaults.backoff.max_ms
        ));
        lines.push("  input schema:".to_owned());
        let pretty = serde_json::to_string_pretty(&spec.input_schema).unwrap_or_default();
        lines.extend(pretty.lines().map(|line| format!("    {line}")));
    }
    lines
}

fn type_text(schema: &Value) -> String {
    if let Some(values) = schema["enum"].as_array() {
        let names: Vec<String> = values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect();
        return format!("one of {}", names.join("|"));
    }
    match schema["type"].as_str() {
        Some("array") => match schema["items"]["type"].as_str() {
            Some(item) => format!("array of {item}"),
            None => "array".to_owned(),
        },
        Some(name) => name.to_owned(),
        None => "any".to_owned(),
    }
}

fn range_text(schema: &Value) -> String {
    let bounds = |low: &str, high: &str| match (schema.get(low), schema.get(high)) {
        (None, None) => None,
        (low, high) => Some(format!(
            "{}..{}",
            low.map(Value::to_string).unwrap_or_default(),
            high.map(Value::to_string).unwrap_or_default()
        )),
    };
    if let Some(range) = bounds("minimum", "maximum") {
        return range;
    }
    if let Some(range) = bounds("minLength", "maxLength") {
        return format!("length {range}");
    }
    if let Some(range) = bounds("minItems", "maxItems") {
        return format!("items {range}");
    }
    String::new()
}

/// One-line JSON, cut to a readable length.
pub fn compact(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 200 {
        let cut: String = text.chars().take(197).collect();
        format!("{cut}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn operation(status: &str, owner: &str) -> Operation {
        serde_json::from_value(json!({
            "id": "0193a3f6-0000-7000-8000-000000000001", "kind": "demo.sleep",
            "status": status, "done": status != "running",
            "progress": {"percent": 100.0, "message": "step 4/4", "data": null},
            "attempt": 1, "max_attempts": 3, "parent_id": null,
            "children": {"total": 0, "queued": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0},
            "result": {"slept_ms": 2000},
            "error": {"code": "timeout", "message": "took too long", "retryable": false},
            "created_at": "2026-11-24T10:00:00.120Z", "started_at": "2026-11-24T10:00:00.500Z",
            "finished_at": "2026-11-24T10:00:02.750Z", "updated_at": "2026-11-24T10:00:02.750Z",
            "seq": 7, "owner": owner
        }))
        .expect("an operation")
    }

    #[test]
    fn the_final_line_tells_outcome_time_and_result() {
        assert_eq!(
            final_line(&operation("succeeded", "a")),
            r#"succeeded in 2.2s: {"slept_ms":2000}"#
        );
        assert_eq!(
            final_line(&operation("failed", "a")),
            "failed in 2.2s: timeout: took too long"
        );
        assert_eq!(
            final_line(&operation("running", "a")),
            "running (100.0% step 4/4)"
        );
    }

    #[test]
    fn tables_align_and_show_owners_only_when_mixed() {
        let table = operations_table(&[operation("succeeded", "a"), operation("running", "a")]);
        assert_eq!(table.len(), 3);
        assert!(table[0].starts_with("ID  "), "{table:?}");
        assert!(!table[0].contains("OWNER"));
        let status_at = table[0].find("STATUS").expect("column");
        assert_eq!(&table[1][status_at..status_at + 9], "succeeded");
        assert_eq!(&table[2][status_at..status_at + 7], "running");
        assert!(table[1].ends_with("2026-11-24T10:00:00Z"), "{table:?}");

        let mixed = operations_table(&[operation("succeeded", "a"), operation("running", "b")]);
        assert!(mixed[0].ends_with("OWNER"));
        assert!(mixed[2].ends_with('b'));
    }

    #[test]
    fn kinds_list_their_fields_with_type_range_and_default() {
        let spec = longrun_shared::kinds::builtin()
            .into_iter()
            .find(|spec| spec.kind == "demo.sleep")
            .expect("built in");
        let lines = kind_lines(&spec, false);
        let duration = lines
            .iter()
            .find(|line| line.trim_start().starts_with("duration_ms"))
            .expect("a duration_ms line");
        assert!(duration.contains("integer"), "{duration}");
        assert!(duration.contains("0..3600000"), "{duration}");
        assert!(duration.contains("default 1000"), "{duration}");
        let full = kind_lines(&spec, true).join("\n");
        assert!(full.contains("defaults: max_attempts 3"), "{full}");
        assert!(full.contains("\"additionalProperties\": false"), "{full}");
    }
}
