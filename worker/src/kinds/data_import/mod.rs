//! `data.import`: validates a CSV against typed columns, in batches of
//! `batch_size` rows run as child jobs (`data.import_batch`) that any
//! worker may take, and optionally writes the valid rows as JSON Lines.
//!
//! The CSV comes as `csv` text in the request, or as a `path` under the
//! worker's data directory (`LONGRUN_DATA_DIR`, shared by the workers,
//! e.g. a network volume). The parent reads the header and finds where
//! each batch starts (so a file's batches get byte ranges, not copies of
//! their rows), starts the batches and parks. While they run, its
//! progress data sums their `totals`: rows, valid, invalid. When all are
//! done it resumes: joins the batches' part files into `output` in order
//! and returns the counts with the invalid rows (line numbers and
//! reasons), at most `max_invalid_rows` of them.

pub mod batch;
pub mod columns;
pub mod files;

use std::io::Read;

use async_trait::async_trait;
use longrun_shared::kinds::{self, KindSpec};
use serde::Deserialize;
use serde_json::{Value, json};

use self::batch::BatchInput;
use self::columns::{Column, check_columns};
use crate::context::JobContext;
use crate::handler::{Handler, JobError, Outcome};
use crate::kinds::parse_input;

/// The input of `data.import` (see the kind's schema).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportInput {
    pub csv: Option<String>,
    pub path: Option<String>,
    #[serde(default = "yes")]
    pub has_header: bool,
    #[serde(default = "comma")]
    pub delimiter: String,
    #[serde(default = "thousand")]
    pub batch_size: usize,
    pub columns: Vec<Column>,
    pub output: Option<String>,
    #[serde(default = "thousand")]
    pub max_invalid_rows: usize,
}

fn yes() -> bool {
    true
}

fn comma() -> String {
    ",".into()
}

fn thousand() -> usize {
    1_000
}

/// One batch: where its rows are in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
    pub first_line: u64,
}

/// The header (when the source has one) and the batches of a source.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub header: Option<Vec<String>>,
    pub batches: Vec<Range>,
    pub rows: u64,
}

/// Reads the source once to find its header and where every
/// `batch_size`-th row starts; `length` is the source's size in bytes.
pub fn plan(
    reader: impl Read,
    length: u64,
    delimiter: u8,
    has_header: bool,
    batch_size: usize,
) -> Result<Plan, JobError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(reader);
    let mut plan = Plan::default();
    let mut record = csv::ByteRecord::new();
    let batch_size = batch_size.max(1) as u64;
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(err) => {
                return Err(JobError::permanent(
                    "unreadable_csv",
                    format!("the CSV cannot be read: {err}"),
                ));
            }
        }
        let position = record
            .position()
            .cloned()
            .unwrap_or_else(csv::Position::new);
        if has_header && plan.header.is_none() {
            let names = record
                .iter()
                .map(|field| {
                    String::from_utf8_lossy(field)
                        .trim_start_matches('\u{feff}')
                        .to_owned()
                })
                .collect();
            plan.header = Some(names);
            continue;
        }
        if plan.rows.is_multiple_of(batch_size) {
            if let Some(last) = plan.batches.last_mut() {
                last.end = position.byte();
            }
            plan.batches.push(Range {
                start: position.byte(),
                end: length,
                first_line: position.line(),
            });
        }
        plan.rows += 1;
    }
    if has_header && plan.header.is_none() {
        plan.header = Some(Vec::new());
    }
    Ok(plan)
}

/// The field index of every column: by header name, or by position.
fn positions(columns: &[Column], header: Option<&[String]>) -> Result<Vec<usize>, JobError> {
    let Some(header) = header else {
        return Ok((0..columns.len()).collect());
    };
    let mut missing = Vec::new();
    let found: Vec<usize> = columns
        .iter()
        .filter_map(|column| {
            let at = header.iter().position(|name| name.trim() == column.name);
            if at.is_none() {
                missing.push(column.name.as_str());
            }
            at
        })
        .collect();
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(JobError::permanent(
            "invalid_input",
            format!(
                "columns missing from the CSV header: {}",
                missing.join(", ")
            ),
        ))
    }
}

/// Plans the import and builds the batches' inputs (blocking: it reads the
/// whole source once).
fn prepare(
    input: &ImportInput,
    data_dir: Option<&std::path::Path>,
) -> Result<Vec<BatchInput>, JobError> {
    check_columns(&input.columns)
        .map_err(|message| JobError::permanent("invalid_input", message))?;
    let delimiter = batch::delimiter_byte(&input.delimiter)?;
    if let Some(output) = &input.output {
        files::output_path(data_dir, output)?;
    }
    let plan = match (&input.csv, &input.path) {
        (Some(text), None) => plan(
            text.as_bytes(),
            text.len() as u64,
            delimiter,
            input.has_header,
            input.batch_size,
        )?,
        (None, Some(relative)) => {
            let path = files::input_path(data_dir, relative)?;
            let file = std::fs::File::open(&path).map_err(|err| {
                JobError::retryable("read_failed", format!("cannot read `{relative}`: {err}"))
            })?;
            let length = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
            plan(
                std::io::BufReader::new(file),
                length,
                delimiter,
                input.has_header,
                input.batch_size,
            )?
        }
        _ => {
            return Err(JobError::permanent(
                "invalid_input",
                "give exactly one of `csv` and `path`",
            ));
        }
    };
    let positions = positions(&input.columns, plan.header.as_deref())?;
    Ok(plan
        .batches
        .iter()
        .enumerate()
        .map(|(index, range)| BatchInput {
            csv: input.csv.as_ref().map(|text| {
                text.get(range.start as usize..range.end as usize)
                    .unwrap_or_default()
                    .to_owned()
            }),
            path: input.path.clone(),
            offset: if input.path.is_some() { range.start } else { 0 },
            end: input.path.as_ref().map(|_| range.end),
            first_line: range.first_line,
            delimiter: input.delimiter.clone(),
            columns: input.columns.clone(),
            positions: positions.clone(),
            output: input
                .output
                .as_ref()
                .map(|output| files::part_name(output, index)),
            max_invalid_rows: input.max_invalid_rows,
        })
        .collect())
}

#[derive(Debug, Clone, Copy)]
pub struct DataImport;

#[async_trait]
impl Handler for DataImport {
    fn spec(&self) -> KindSpec {
        kinds::builtin_spec(kinds::DATA_IMPORT).expect("data.import is built in")
    }

    async fn run(&self, ctx: JobContext, input: Value) -> Result<Outcome, JobError> {
        let input: ImportInput = parse_input(input)?;
        let data_dir = ctx.data_dir().map(std::path::Path::to_path_buf);
        let planned = input.clone();
        let batches = crate::kinds::blocking("planning the import", move || {
            prepare(&planned, data_dir.as_deref())
        })
        .await?;
        ctx.progress(
            0.0,
            format!("validating in {} batches", batches.len()),
            json!({"batches": batches.len()}),
        );
        let count = batches.len();
        let inputs = batches
            .into_iter()
            .map(|batch| serde_json::to_value(batch).unwrap_or(Value::Null))
            .collect();
        ctx.spawn_children(kinds::DATA_IMPORT_BATCH, inputs).await?;
        Ok(Outcome::WaitForChildren {
            resume: true,
            state: json!({"batches": count}),
        })
    }

    async fn resume(
        &self,
        ctx: JobContext,
        input: Value,
        state: Value,
    ) -> Result<Outcome, JobError> {
        let input: ImportInput = parse_input(input)?;
        let batches = state["batches"].as_u64().unwrap_or(0) as usize;
        let totals = ctx.child_totals().await?;
        let invalid_rows = collect_invalid_rows(&ctx, input.max_invalid_rows).await?;
        let invalid = totals["invalid"].as_u64().unwrap_or(0);
        if let Some(output) = &input.output {
            let path = files::output_path(ctx.data_dir(), output)?;
            let parts: Vec<_> = (0..batches)
                .map(|index| files::output_path(ctx.data_dir(), &files::part_name(output, index)))
                .collect::<Result<_, _>>()?;
            crate::kinds::blocking("joining the output", move || {
                files::join_parts(&path, &parts).map_err(|err| {
                    JobError::retryable("write_failed", format!("cannot write the output: {err}"))
                })
            })
            .await?;
        }
        Ok(Outcome::Done(json!({
            "rows": totals["rows"].as_u64().unwrap_or(0),
            "valid": totals["valid"].as_u64().unwrap_or(0),
            "invalid": invalid,
            "invalid_rows": invalid_rows,
            "invalid_rows_truncated": (invalid_rows.len() as u64) < invalid,
            "batches": batches,
            "output": input.output,
        })))
    }
}

/// The invalid rows the batches listed, in order, at most `max`.
async fn collect_invalid_rows(ctx: &JobContext, max: usize) -> Result<Vec<Value>, JobError> {
    let mut rows = Vec::new();
    let mut offset = 0;
    while rows.len() < max {
        let page = ctx.children(offset, 500).await?;
        for child in &page.operations {
            if let Some(listed) = child.result["invalid_rows"].as_array() {
                rows.extend(listed.iter().take(max - rows.len()).cloned());
            }
        }
        offset += page.operations.len() as u64;
        if page.next_cursor.is_none() || page.operations.is_empty() {
            break;
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_cuts_batches_at_row_starts() {
        let text = "id,name\n1,a\n2,\"multi\nline\"\n3,c\n4,d\n";
        let plan = plan(text.as_bytes(), text.len() as u64, b',', true, 2).expect("plans");
        assert_eq!(plan.header, Some(vec!["id".to_owned(), "name".to_owned()]));
        assert_eq!(plan.rows, 4);
        assert_eq!(plan.batches.len(), 2);
        let first = plan.batches[0];
        let second = plan.batches[1];
        assert_eq!(
            &text[first.start as usize..first.end as usize],
            "1,a\n2,\"multi\nline\"\n"
        );
        assert_eq!(first.first_line, 2);
        assert_eq!(
            &text[second.start as usize..second.end as usize],
            "3,c\n4,d\n"
        );
        assert_eq!(second.first_line, 5);
    }

    #[test]
    fn columns_are_found_by_header_name() {
        let column = |name: &str| Column {
            name: name.into(),
            column_type: Default::default(),
            required: true,
            max_length: None,
        };
        let header = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(
            positions(&[column("b"), column("a")], Some(&header)).expect("found"),
            vec![1, 0]
        );
        let err = positions(&[column("c")], Some(&header)).expect_err("missing");
        assert!(err.message.contains('c'));
        assert_eq!(
            positions(&[column("x"), column("y")], None).expect("by position"),
            vec![0, 1]
        );
    }
}
