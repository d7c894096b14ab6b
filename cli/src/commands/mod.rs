//! The client commands, one module per concern; each returns the exit code
//! it ends with, or a [`Failure`].

pub mod config;
pub mod follow;
pub mod manage;
pub mod show;
pub mod start;
pub mod token;
pub mod wait;

use longrun_shared::store::transitions::is_valid_id;

use crate::failure::Failure;

/// The exit code of a command that ran, or why it could not.
pub type Outcome = Result<u8, Failure>;

/// Checks that `id` looks like an operation id before asking the server
/// (case does not matter; ids are lowercase).
pub fn operation_id(id: &str) -> Result<String, Failure> {
    let id = id.trim().to_ascii_lowercase();
    if is_valid_id(&id) {
        return Ok(id);
    }
    Err(Failure::usage(format!(
        "`{id}` is not an operation id (ids look like 0193a3f6-8e4b-7c2d-9f10-3b5c7d9e1a2f; \
         `longrun list` shows yours)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_before_any_request() {
        let id = "0193a3f6-8e4b-7c2d-9f10-3b5c7d9e1a2f";
        assert_eq!(operation_id(id).expect("valid"), id);
        assert_eq!(operation_id(&format!(" {id}\n")).expect("trimmed"), id);
        assert_eq!(operation_id(&id.to_uppercase()).expect("any case"), id);
        for bad in ["", "nope", "../kinds", "0193a3f6"] {
            let err = operation_id(bad).expect_err("invalid");
            assert_eq!(err.code, crate::failure::exit::USAGE);
        }
    }
}
