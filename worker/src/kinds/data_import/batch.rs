//! `data.import_batch`: validates one batch of a `data.import` — the rows
//! of a CSV slice, or of a byte range of a file — and writes the valid
//! ones as JSON Lines to a part file the parent joins later. Its result
//! carries `totals` (rows, valid, invalid), which the parent's progress
//! data sums while the batches run.

use std::io::{self, Read, Seek, SeekFrom, Write};

use async_trait::async_trait;
use longrun_shared::kinds::{self, KindSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::columns::Column;
use super::files;
use crate::context::JobContext;
use crate::handler::{Handler, JobError, Outcome};
use crate::kinds::parse_input;

/// The input of one batch (see the kind's schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default)]
    pub offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<u64>,
    #[serde(default = "first")]
    pub first_line: u64,
    #[serde(default = "comma")]
    pub delimiter: String,
    pub columns: Vec<Column>,
    pub positions: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default = "thousand")]
    pub max_invalid_rows: usize,
}

fn first() -> u64 {
    1
}

fn comma() -> String {
    ",".into()
}

fn thousand() -> usize {
    1_000
}

/// What a batch found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchReport {
    pub rows: u64,
    pub valid: u64,
    pub invalid: u64,
    /// The first `max_invalid_rows` invalid rows: line and reasons.
    pub invalid_rows: Vec<Value>,
}

/// Validates every row `reader` yields; valid rows go to `write_valid`.
pub fn validate(
    reader: impl Read,
    delimiter: u8,
    columns: &[Column],
    positions: &[usize],
    first_line: u64,
    max_invalid_rows: usize,
    mut write_valid: impl FnMut(&Value) -> io::Result<()>,
) -> Result<BatchReport, JobError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(reader);
    let mut report = BatchReport::default();
    let mut record = csv::ByteRecord::new();
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
        report.rows += 1;
        let line = first_line + record.position().map_or(1, |p| p.line()) - 1;
        let mut row = Map::new();
        let mut errors = Vec::new();
        for (column, &position) in columns.iter().zip(positions) {
            let checked = match record.get(position) {
                None => Err(format!("missing: the row has {} fields", record.len())),
                Some(bytes) => std::str::from_utf8(bytes)
                    .map_err(|_| "not valid UTF-8".to_owned())
                    .and_then(|raw| column.check(raw)),
            };
            match checked {
                Ok(value) => {
                    row.insert(column.name.clone(), value);
                }
                Err(reason) => errors.push(json!({"column": column.name, "reason": reason})),
            }
        }
        if errors.is_empty() {
            report.valid += 1;
            write_valid(&Value::Object(row)).map_err(write_error)?;
        } else {
            report.invalid += 1;
            if report.invalid_rows.len() < max_invalid_rows {
                report
                    .invalid_rows
                    .push(json!({"line": line, "errors": errors}));
            }
        }
    }
    Ok(report)
}

fn write_error(err: io::Error) -> JobError {
    JobError::retryable("write_failed", format!("cannot write the output: {err}"))
}

pub fn delimiter_byte(delimiter: &str) -> Result<u8, JobError> {
    match delimiter.as_bytes() {
        [byte] if byte.is_ascii() => Ok(*byte),
        _ => Err(JobError::permanent(
            "invalid_input",
            "delimiter must be one ASCII character",
        )),
    }
}

/// Runs one batch (blocking: file and CPU work).
pub fn run_batch(
    input: &BatchInput,
    data_dir: Option<&std::path::Path>,
) -> Result<Value, JobError> {
    if input.columns.len() != input.positions.len() {
        return Err(JobError::permanent(
            "invalid_input",
            "columns and positions differ in length",
        ));
    }
    let delimiter = delimiter_byte(&input.delimiter)?;
    let mut output = match &input.output {
        Some(relative) => {
            let path = files::output_path(data_dir, relative)?;
            Some(files::create_fresh(&path).map_err(write_error)?)
        }
        None => None,
    };
    let write_valid = |row: &Value| -> io::Result<()> {
        if let Some(out) = output.as_mut() {
            serde_json::to_writer(&mut *out, row)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    };
    let (columns, positions) = (&input.columns, &input.positions);
    let report = match (&input.csv, &input.path) {
        (Some(text), _) => validate(
            text.as_bytes(),
            delimiter,
            columns,
            positions,
            input.first_line,
            input.max_invalid_rows,
            write_valid,
        )?,
        (None, Some(relative)) => {
            let path = files::input_path(data_dir, relative)?;
            let mut file = std::fs::File::open(&path).map_err(read_error)?;
            file.seek(SeekFrom::Start(input.offset))
                .map_err(read_error)?;
            let length = input
                .end
                .map_or(u64::MAX, |end| end.saturating_sub(input.offset));
            validate(
                io::BufReader::new(file).take(length),
                delimiter,
                columns,
                positions,
                input.first_line,
                input.max_invalid_rows,
                write_valid,
            )?
        }
        (None, None) => {
            return Err(JobError::permanent(
                "invalid_input",
                "one of `csv` and `path` is needed",
            ));
        }
    };
    if let Some(mut out) = output {
        out.flush().map_err(write_error)?;
    }
    Ok(json!({
        "totals": {"rows": report.rows, "valid": report.valid, "invalid": report.invalid},
        "invalid_rows": report.invalid_rows,
        "first_line": input.first_line,
    }))
}

fn read_error(err: io::Error) -> JobError {
    JobError::retryable("read_failed", format!("cannot read the input: {err}"))
}

#[derive(Debug, Clone, Copy)]
pub struct DataImportBatch;

#[async_trait]
impl Handler for DataImportBatch {
    fn spec(&self) -> KindSpec {
        kinds::builtin_spec(kinds::DATA_IMPORT_BATCH).expect("data.import_batch is built in")
    }

    async fn run(&self, ctx: JobContext, input: Value) -> Result<Outcome, JobError> {
        let input: BatchInput = parse_input(input)?;
        let data_dir = ctx.data_dir().map(std::path::Path::to_path_buf);
        let result =
            crate::kinds::blocking("the batch", move || run_batch(&input, data_dir.as_deref()))
                .await?;
        Ok(Outcome::Done(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::data_import::columns::ColumnType;

    fn columns() -> Vec<Column> {
        vec![
            Column {
                name: "id".into(),
                column_type: ColumnType::Integer,
                required: true,
                max_length: None,
            },
            Column {
                name: "email".into(),
                column_type: ColumnType::Email,
                required: false,
                max_length: None,
            },
        ]
    }

    #[test]
    fn rows_are_checked_with_their_line_numbers() {
        let text = "1,a@b.io\nx,nope\n3\n\"4\",\"c@d.io\"\n";
        let mut valid = Vec::new();
        let report = validate(text.as_bytes(), b',', &columns(), &[0, 1], 10, 100, |row| {
            valid.push(row.clone());
            Ok(())
        })
        .expect("reads");
        assert_eq!((report.rows, report.valid, report.invalid), (4, 2, 2));
        assert_eq!(valid[0], json!({"id": 1, "email": "a@b.io"}));
        assert_eq!(report.invalid_rows[0]["line"], 11);
        assert_eq!(
            report.invalid_rows[0]["errors"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(report.invalid_rows[1]["line"], 12);
        assert!(
            report.invalid_rows[1]["errors"][0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("missing")),
            "{:?}",
            report.invalid_rows[1]
        );
    }

    #[test]
    fn only_the_first_invalid_rows_are_listed_but_all_are_counted() {
        let text = "a\nb\nc\n";
        let report = validate(text.as_bytes(), b',', &columns()[..1], &[0], 1, 2, |_| {
            Ok(())
        })
        .expect("reads");
        assert_eq!(report.invalid, 3);
        assert_eq!(report.invalid_rows.len(), 2);
    }
}
