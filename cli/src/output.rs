//! Writing to stdout and stderr. A reader that goes away (`longrun list |
//! head -1`) ends the program quietly instead of the panic `println!`
//! would give; every line is flushed, so NDJSON streams as it happens.

use std::fmt;
use std::io::{ErrorKind, Write};

/// Writes one line to stdout.
pub fn line(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(err) = written {
        gone(err.kind());
    }
}

/// Writes `value` as one line of JSON to stdout.
pub fn json<T: serde::Serialize + ?Sized>(value: &T) {
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(err) = written {
        gone(err.kind());
    }
}

/// Writes one line to stderr (notes for a person, never data).
pub fn note(args: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Stdout cannot be written: the reader left. Nothing more to say.
fn gone(kind: ErrorKind) -> ! {
    let code = if kind == ErrorKind::BrokenPipe { 0 } else { 5 };
    std::process::exit(code)
}

/// `say!("…", …)`: a line on stdout.
macro_rules! say {
    ($($arg:tt)*) => { $crate::output::line(format_args!($($arg)*)) };
}

/// `note!("…", …)`: a line on stderr.
macro_rules! note {
    ($($arg:tt)*) => { $crate::output::note(format_args!($($arg)*)) };
}
