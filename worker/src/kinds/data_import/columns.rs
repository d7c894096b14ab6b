//! The typed columns of a `data.import` and how one CSV value is checked
//! against its column: type, presence, length. A valid value becomes its
//! JSON form (an integer column gives a JSON integer, and so on).

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    #[default]
    String,
    Integer,
    Number,
    Boolean,
    /// `YYYY-MM-DD`, a real calendar date.
    Date,
    Email,
}

/// One column of the import, as the input names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(default, rename = "type")]
    pub column_type: ColumnType,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
}

fn yes() -> bool {
    true
}

impl Column {
    /// The JSON form of `raw`, or why it is not valid for this column.
    pub fn check(&self, raw: &str) -> Result<Value, String> {
        if raw.is_empty() {
            return if self.required {
                Err("a value is required".into())
            } else {
                Ok(Value::Null)
            };
        }
        if let Some(max) = self.max_length {
            let length = raw.chars().count();
            if length > max {
                return Err(format!("{length} characters, at most {max} allowed"));
            }
        }
        let shown = shorten(raw);
        match self.column_type {
            ColumnType::String => Ok(Value::String(raw.to_owned())),
            ColumnType::Integer => raw
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("`{shown}` is not an integer")),
            ColumnType::Number => raw
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("`{shown}` is not a number")),
            ColumnType::Boolean => match raw.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(Value::Bool(true)),
                "false" | "no" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!(
                    "`{shown}` is not a boolean (true/false, yes/no, 1/0)"
                )),
            },
            ColumnType::Date => is_date(raw)
                .then(|| Value::String(raw.to_owned()))
                .ok_or_else(|| format!("`{shown}` is not a date (YYYY-MM-DD)")),
            ColumnType::Email => is_email(raw)
                .then(|| Value::String(raw.to_owned()))
                .ok_or_else(|| format!("`{shown}` is not an email address")),
        }
    }
}

/// A value as an error message shows it: at most 40 characters.
fn shorten(raw: &str) -> String {
    if raw.chars().count() <= 40 {
        raw.to_owned()
    } else {
        format!("{}…", raw.chars().take(40).collect::<String>())
    }
}

fn is_date(raw: &str) -> bool {
    let parts: Vec<&str> = raw.split('-').collect();
    let [year, month, day] = parts.as_slice() else {
        return false;
    };
    let digits =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_digit());
    if !(digits(year, 4) && digits(month, 2) && digits(day, 2)) {
        return false;
    }
    let (Ok(year), Ok(month), Ok(day)) = (
        year.parse::<u32>(),
        month.parse::<u32>(),
        day.parse::<u32>(),
    ) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

fn is_email(raw: &str) -> bool {
    let Some((local, domain)) = raw.rsplit_once('@') else {
        return false;
    };
    let clean =
        |part: &str| !part.is_empty() && !part.chars().any(|c| c.is_whitespace() || c == '@');
    clean(local)
        && clean(domain)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// Checks the columns of an input: at least one, names unique.
pub fn check_columns(columns: &[Column]) -> Result<(), String> {
    if columns.is_empty() {
        return Err("at least one column is needed".into());
    }
    let mut seen = std::collections::HashSet::new();
    for column in columns {
        if !seen.insert(column.name.as_str()) {
            return Err(format!("column `{}` is named twice", column.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn column(column_type: ColumnType) -> Column {
        Column {
            name: "c".into(),
            column_type,
            required: true,
            max_length: None,
        }
    }

    #[test]
    fn values_become_typed_json() {
        assert_eq!(column(ColumnType::Integer).check("-42"), Ok(json!(-42)));
        assert_eq!(column(ColumnType::Number).check("2.5"), Ok(json!(2.5)));
        assert_eq!(column(ColumnType::Boolean).check("Yes"), Ok(json!(true)));
        assert_eq!(
            column(ColumnType::Date).check("2024-02-29"),
            Ok(json!("2024-02-29"))
        );
        assert_eq!(
            column(ColumnType::Email).check("a@b.io"),
            Ok(json!("a@b.io"))
        );
        assert_eq!(column(ColumnType::String).check("x"), Ok(json!("x")));
    }

    #[test]
    fn bad_values_say_why() {
        assert!(column(ColumnType::Integer).check("4.5").is_err());
        assert!(column(ColumnType::Number).check("NaN").is_err());
        assert!(column(ColumnType::Date).check("2023-02-29").is_err());
        assert!(column(ColumnType::Date).check("2023-13-01").is_err());
        assert!(column(ColumnType::Email).check("a@b").is_err());
        assert!(column(ColumnType::Email).check("a b@c.de").is_err());
        let err = column(ColumnType::Integer).check("abc").expect_err("bad");
        assert!(err.contains("`abc` is not an integer"), "{err}");
        assert_eq!(
            column(ColumnType::String).check(""),
            Err("a value is required".into())
        );
        let optional = Column {
            required: false,
            ..column(ColumnType::Integer)
        };
        assert_eq!(optional.check(""), Ok(Value::Null));
        let short = Column {
            max_length: Some(3),
            ..column(ColumnType::String)
        };
        assert!(short.check("abcd").is_err());
        assert!(short.check("abc").is_ok());
    }

    #[test]
    fn column_names_are_unique() {
        let a = column(ColumnType::String);
        assert!(check_columns(&[a.clone(), a.clone()]).is_err());
        assert!(check_columns(&[]).is_err());
        assert!(check_columns(&[a]).is_ok());
    }
}
