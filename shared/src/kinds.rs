//! Operation kinds: their names, descriptions, input schemas and defaults.
//!
//! The api validates every input against its kind's JSON Schema before
//! anything is queued, and serves the list at `GET /v1/kinds`; the worker
//! implements a handler per kind. The built-in specs live here so that an
//! api process knows them without asking a worker.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

/// How long to wait between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    /// The same delay every time.
    Fixed,
    /// `base × 2^(attempt-1)`, capped, with full jitter.
    Exponential,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Backoff {
    #[serde(rename = "type")]
    pub kind: BackoffKind,
    pub base_ms: u64,
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            kind: BackoffKind::Exponential,
            base_ms: 1_000,
            max_ms: 60_000,
        }
    }
}

impl Backoff {
    /// The delay before the attempt after `attempt` (1-based), given a
    /// uniform random number in `[0, 1)` for the jitter.
    pub fn delay_ms(&self, attempt: u32, unit_random: f64) -> u64 {
        match self.kind {
            BackoffKind::Fixed => self.base_ms.min(self.max_ms),
            BackoffKind::Exponential => {
                let exponent = attempt.saturating_sub(1).min(32);
                let ceiling = self
                    .base_ms
                    .saturating_mul(1u64 << exponent)
                    .min(self.max_ms);
                (ceiling as f64 * unit_random.clamp(0.0, 1.0)) as u64
            }
        }
    }
}

/// What happens to a parent when one of its children fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// The first failed child cancels the rest and fails the parent.
    FailFast,
    /// The parent fails once every child finished, if any failed.
    #[default]
    WaitAll,
    /// The parent succeeds whatever its children did.
    IgnoreFailures,
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::FailFast => "fail_fast",
            FailurePolicy::WaitAll => "wait_all",
            FailurePolicy::IgnoreFailures => "ignore_failures",
        }
    }
}

/// Longest duration option, ms (30 days).
pub const MAX_DURATION_MS: u64 = 30 * 86_400_000;

/// Options of a start, in its query string (the body is the kind's input):
/// what the api reads and what the client sends. Every `None` keeps the
/// kind's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StartParams {
    /// Attempts before failing for good; default per kind (see GET /v1/kinds).
    #[param(minimum = 1, maximum = 100)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Per-attempt limit in ms (start to close); 0 for none.
    #[param(minimum = 0, maximum = 2_592_000_000_u64)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Overall limit in ms from now, across attempts; 0 for none.
    #[param(minimum = 0, maximum = 2_592_000_000_u64)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// `fixed` or `exponential` (full jitter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffKind>,
    /// Base delay between attempts, ms.
    #[param(minimum = 0, maximum = 2_592_000_000_u64)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// Longest delay between attempts, ms (raised to backoff_ms when lower).
    #[param(minimum = 0, maximum = 2_592_000_000_u64)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_max_ms: Option<u64>,
    /// What a failed child does to this operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,
}

impl StartParams {
    /// Refuses values out of range, with a message for the caller.
    pub fn check(&self) -> Result<(), String> {
        let bad = |detail: String| Err(detail);
        if self.max_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
            return bad("max_attempts must be between 1 and 100".into());
        }
        for (name, value) in [
            ("timeout_ms", self.timeout_ms),
            ("deadline_ms", self.deadline_ms),
            ("backoff_ms", self.backoff_ms),
            ("backoff_max_ms", self.backoff_max_ms),
        ] {
            if value.is_some_and(|ms| ms > MAX_DURATION_MS) {
                return bad(format!(
                    "{name} must be at most {MAX_DURATION_MS} (30 days)"
                ));
            }
        }
        Ok(())
    }

    /// The backoff: these parameters over the kind's `default`.
    pub fn backoff(&self, default: Backoff) -> Backoff {
        let base_ms = self.backoff_ms.unwrap_or(default.base_ms);
        Backoff {
            kind: self.backoff.unwrap_or(default.kind),
            base_ms,
            max_ms: self.backoff_max_ms.unwrap_or(default.max_ms).max(base_ms),
        }
    }
}

/// Retry and time limits of a kind, overridable per request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KindDefaults {
    pub max_attempts: u32,
    /// Per-attempt limit (start to close); 0 means none.
    pub timeout_ms: u64,
    pub backoff: Backoff,
}

impl Default for KindDefaults {
    fn default() -> Self {
        KindDefaults {
            max_attempts: 3,
            timeout_ms: 0,
            backoff: Backoff::default(),
        }
    }
}

/// A kind as `GET /v1/kinds` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KindSpec {
    pub kind: String,
    pub description: String,
    #[schema(value_type = Object)]
    pub input_schema: Value,
    pub defaults: KindDefaults,
}

/// Splits `module.operation` into its parts; `None` unless both are
/// non-empty and made of lowercase letters, digits, `_` and `-`.
pub fn split_kind(kind: &str) -> Option<(&str, &str)> {
    let (module, operation) = kind.split_once('.')?;
    let valid = |part: &str| {
        !part.is_empty()
            && part.len() <= 64
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    (valid(module) && valid(operation)).then_some((module, operation))
}

pub const DEMO_SLEEP: &str = "demo.sleep";
pub const DEMO_FANOUT: &str = "demo.fanout";
pub const DATA_IMPORT: &str = "data.import";
pub const CALC_PRIMES: &str = "calc.primes";
pub const DATA_IMPORT_BATCH: &str = "data.import_batch";

/// The kinds every longrun worker runs.
pub fn builtin() -> Vec<KindSpec> {
    vec![
        demo_sleep(),
        demo_fanout(),
        data_import(),
        data_import_batch(),
        calc_primes(),
    ]
}

/// The built-in spec of `kind`.
pub fn builtin_spec(kind: &str) -> Option<KindSpec> {
    builtin().into_iter().find(|spec| spec.kind == kind)
}

fn demo_sleep() -> KindSpec {
    KindSpec {
        kind: DEMO_SLEEP.into(),
        description: "Sleeps `duration_ms` in `steps` equal steps, reporting progress after each; \
                      fails its first `fail_times` attempts with a retryable error."
            .into(),
        input_schema: json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "duration_ms": {"type": "integer", "minimum": 0, "maximum": 3_600_000, "default": 1000,
                                "description": "total time to sleep"},
                "steps": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 10,
                          "description": "progress reports, evenly spaced"},
                "fail_times": {"type": "integer", "minimum": 0, "maximum": 100, "default": 0,
                               "description": "attempts that fail (retryably) before one succeeds"}
            }
        }),
        defaults: KindDefaults {
            max_attempts: 3,
            timeout_ms: 0,
            backoff: Backoff {
                kind: BackoffKind::Exponential,
                base_ms: 100,
                max_ms: 10_000,
            },
        },
    }
}

fn demo_fanout() -> KindSpec {
    KindSpec {
        kind: DEMO_FANOUT.into(),
        description: "Starts `children` demo.sleep children and follows them; succeeds when all \
                      succeed, fails after they all finish when any failed (see failure_policy). \
                      With `child_kind` demo.fanout and `child_input`/`child_inputs` its children \
                      are fan-outs themselves, for trees of any depth; children inherit the \
                      parent's failure policy."
            .into(),
        input_schema: json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "children": {"type": "integer", "minimum": 0, "maximum": 100_000, "default": 10},
                "child_duration_ms": {"type": "integer", "minimum": 0, "maximum": 3_600_000, "default": 100},
                "child_steps": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 1},
                "fail_children": {"type": "array", "maxItems": 100_000, "default": [],
                                  "items": {"type": "integer", "minimum": 0},
                                  "description": "indices of demo.sleep children that fail every attempt"},
                "child_kind": {"enum": ["demo.sleep", "demo.fanout"], "default": "demo.sleep",
                               "description": "the kind of the children"},
                "child_input": {"type": "object",
                                "description": "the input of every child (default: built from child_duration_ms, child_steps and fail_children)"},
                "child_inputs": {"type": "array", "maxItems": 100_000, "items": {"type": "object"},
                                 "description": "one input per child; their number is the number of children"}
            }
        }),
        defaults: KindDefaults {
            max_attempts: 3,
            timeout_ms: 0,
            backoff: Backoff::default(),
        },
    }
}

fn data_import() -> KindSpec {
    KindSpec {
        kind: DATA_IMPORT.into(),
        description: "Validates a CSV (sent as `csv` text, or read from `path` under the worker's \
                      data directory) against `columns` in batches of `batch_size` rows run as \
                      child jobs; valid rows are written as JSON Lines when `output` is set. \
                      Result: row counts and every invalid row with its line number and reasons."
            .into(),
        input_schema: json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "csv": {"type": "string", "description": "the CSV text itself"},
                "path": {"type": "string", "minLength": 1, "maxLength": 1024,
                         "description": "a file under LONGRUN_DATA_DIR"},
                "has_header": {"type": "boolean", "default": true},
                "delimiter": {"type": "string", "minLength": 1, "maxLength": 1, "default": ","},
                "batch_size": {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 1000},
                "columns": {
                    "type": "array", "minItems": 1, "maxItems": 1000,
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1, "maxLength": 128},
                            "type": {"enum": ["string", "integer", "number", "boolean", "date", "email"],
                                     "default": "string"},
                            "required": {"type": "boolean", "default": true},
                            "max_length": {"type": "integer", "minimum": 1}
                        }
                    }
                },
                "output": {"type": "string", "minLength": 1, "maxLength": 1024,
                           "description": "a JSON Lines file under LONGRUN_DATA_DIR for the valid rows"},
                "max_invalid_rows": {"type": "integer", "minimum": 0, "maximum": 100_000, "default": 1000,
                                     "description": "invalid rows listed in the result (all are counted)"}
            },
            "required": ["columns"],
            "oneOf": [{"required": ["csv"]}, {"required": ["path"]}]
        }),
        defaults: KindDefaults {
            max_attempts: 3,
            timeout_ms: 0,
            backoff: Backoff::default(),
        },
    }
}

fn data_import_batch() -> KindSpec {
    KindSpec {
        kind: DATA_IMPORT_BATCH.into(),
        description: "One batch of a data.import (which starts these as its children): validates \
                      the CSV rows of `csv`, or of bytes `offset`..`end` of `path` under the data \
                      directory, whose fields `positions` map to `columns`; writes the valid rows \
                      as JSON Lines to `output` when set. Result: `totals` (rows, valid, invalid) \
                      and the invalid rows with their line numbers and reasons."
            .into(),
        input_schema: json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "required": ["columns", "positions"],
            "properties": {
                "csv": {"type": "string"},
                "path": {"type": "string", "minLength": 1, "maxLength": 1024},
                "offset": {"type": "integer", "minimum": 0, "default": 0},
                "end": {"type": "integer", "minimum": 0},
                "first_line": {"type": "integer", "minimum": 1, "default": 1,
                               "description": "line number of the first row in the whole file"},
                "delimiter": {"type": "string", "minLength": 1, "maxLength": 1, "default": ","},
                "columns": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {"type": "object"}},
                "positions": {"type": "array", "maxItems": 1000, "items": {"type": "integer", "minimum": 0}},
                "output": {"type": "string", "minLength": 1, "maxLength": 1100},
                "max_invalid_rows": {"type": "integer", "minimum": 0, "maximum": 100_000, "default": 1000}
            },
            "oneOf": [{"required": ["csv"]}, {"required": ["path"]}]
        }),
        defaults: KindDefaults {
            max_attempts: 3,
            timeout_ms: 0,
            backoff: Backoff::default(),
        },
    }
}

fn calc_primes() -> KindSpec {
    KindSpec {
        kind: CALC_PRIMES.into(),
        description: "Counts the primes from `from` (default 2) up to but excluding `limit` \
                      with a segmented sieve on the worker's blocking thread pool, split into \
                      `segments` child jobs when above 1; progress data carries the partial count."
            .into(),
        input_schema: json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "required": ["limit"],
            "properties": {
                "limit": {"type": "integer", "minimum": 2, "maximum": 100_000_000_000u64},
                "from": {"type": "integer", "minimum": 0, "maximum": 100_000_000_000u64, "default": 2,
                         "description": "the first number to look at"},
                "segments": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 1,
                             "description": "child jobs to split the range into"}
            }
        }),
        defaults: KindDefaults {
            max_attempts: 2,
            timeout_ms: 0,
            backoff: Backoff::default(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_split_into_module_and_operation() {
        assert_eq!(split_kind("demo.sleep"), Some(("demo", "sleep")));
        assert_eq!(split_kind("demo"), None);
        assert_eq!(split_kind("Demo.sleep"), None);
        assert_eq!(split_kind(".sleep"), None);
    }

    #[test]
    fn builtin_kinds_are_valid_names() {
        for spec in builtin() {
            assert!(split_kind(&spec.kind).is_some(), "{}", spec.kind);
            assert_eq!(spec.input_schema["type"], "object");
        }
    }

    #[test]
    fn exponential_backoff_grows_caps_and_jitters() {
        let backoff = Backoff {
            kind: BackoffKind::Exponential,
            base_ms: 100,
            max_ms: 1_000,
        };
        assert_eq!(backoff.delay_ms(1, 0.999_999), 99);
        assert_eq!(backoff.delay_ms(3, 0.5), 200);
        assert_eq!(backoff.delay_ms(30, 0.5), 500);
        assert_eq!(backoff.delay_ms(3, 0.0), 0);
        let fixed = Backoff {
            kind: BackoffKind::Fixed,
            ..backoff
        };
        assert_eq!(fixed.delay_ms(7, 0.3), 100);
    }
}
