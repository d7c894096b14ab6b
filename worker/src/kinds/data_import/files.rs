//! File access of `data.import`: every path is relative to the worker's
//! data directory (`LONGRUN_DATA_DIR`) and may not leave it — not with
//! `..`, not as an absolute path, not through a symbolic link. Written
//! files never follow a link either: they are created anew.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path, PathBuf};

use crate::handler::JobError;

/// A file to read, resolved inside the data directory.
pub fn input_path(data_dir: Option<&Path>, relative: &str) -> Result<PathBuf, JobError> {
    let base = base(data_dir)?;
    let joined = base.join(plain(relative)?);
    let resolved = joined.canonicalize().map_err(|err| {
        JobError::permanent(
            "file_not_found",
            format!("cannot open `{relative}` in the data directory: {err}"),
        )
    })?;
    if !resolved.starts_with(&base) {
        return Err(outside(relative));
    }
    if !resolved.is_file() {
        return Err(JobError::permanent(
            "file_not_found",
            format!("`{relative}` is not a file"),
        ));
    }
    Ok(resolved)
}

/// A file to write, resolved inside the data directory (its directory
/// must exist).
pub fn output_path(data_dir: Option<&Path>, relative: &str) -> Result<PathBuf, JobError> {
    let base = base(data_dir)?;
    let relative_path = plain(relative)?;
    let name = relative_path
        .file_name()
        .ok_or_else(|| outside(relative))?
        .to_owned();
    let parent = base.join(relative_path.parent().unwrap_or(Path::new("")));
    let parent = parent.canonicalize().map_err(|err| {
        JobError::permanent(
            "file_not_found",
            format!("the directory of `{relative}` does not exist in the data directory: {err}"),
        )
    })?;
    if !parent.starts_with(&base) {
        return Err(outside(relative));
    }
    Ok(parent.join(name))
}

/// The part file a batch writes before the parent joins them.
pub fn part_name(output: &str, index: usize) -> String {
    format!("{output}.part-{index:06}")
}

/// Creates `path` anew (a file or link already there is removed first, so
/// a planted link is never followed).
pub fn create_fresh(path: &Path) -> io::Result<BufWriter<File>> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    Ok(BufWriter::new(file))
}

/// Joins `parts` into `output`, in order, through a temporary file renamed
/// into place; removes the parts.
pub fn join_parts(output: &Path, parts: &[PathBuf]) -> io::Result<()> {
    let mut temporary = output.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut writer = create_fresh(&temporary)?;
    for part in parts {
        match File::open(part) {
            Ok(mut file) => {
                io::copy(&mut file, &mut writer)?;
            }
            // A batch without valid rows may have written nothing.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    writer.flush()?;
    writer.get_ref().sync_all()?;
    drop(writer);
    std::fs::rename(&temporary, output)?;
    for part in parts {
        let _ = std::fs::remove_file(part);
    }
    Ok(())
}

fn base(data_dir: Option<&Path>) -> Result<PathBuf, JobError> {
    let dir = data_dir.ok_or_else(|| {
        JobError::permanent(
            "file_access_disabled",
            "this worker has no data directory; set LONGRUN_DATA_DIR or send the CSV as `csv`",
        )
    })?;
    dir.canonicalize().map_err(|err| {
        JobError::permanent(
            "file_access_disabled",
            format!("the data directory {} is not usable: {err}", dir.display()),
        )
    })
}

/// `relative` as a path of plain names only.
fn plain(relative: &str) -> Result<PathBuf, JobError> {
    let path = Path::new(relative);
    let plain = !relative.is_empty()
        && path
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
    if plain {
        Ok(path.to_path_buf())
    } else {
        Err(outside(relative))
    }
}

fn outside(relative: &str) -> JobError {
    JobError::permanent(
        "path_outside_data_dir",
        format!("`{relative}` is not a relative path inside the data directory"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_data_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("in.csv"), "a\n1\n").expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        let data = Some(dir.path());
        assert!(input_path(data, "in.csv").is_ok());
        for bad in ["../in.csv", "/etc/passwd", "sub/../../x", "./in.csv", ""] {
            let err = input_path(data, bad).expect_err(bad);
            assert_eq!(err.code, "path_outside_data_dir", "{bad}");
            assert!(!err.retryable);
        }
        assert_eq!(
            input_path(data, "missing.csv").expect_err("missing").code,
            "file_not_found"
        );
        assert_eq!(
            input_path(None, "in.csv").expect_err("off").code,
            "file_access_disabled"
        );
        assert!(output_path(data, "sub/out.jsonl").is_ok());
        assert!(output_path(data, "../out.jsonl").is_err());
        assert_eq!(
            output_path(data, "nodir/out.jsonl")
                .expect_err("no dir")
                .code,
            "file_not_found"
        );
    }

    #[test]
    fn a_link_out_of_the_data_directory_is_refused() {
        let outside_dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside_dir.path().join("secret"), "x").expect("write");
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside_dir.path().join("secret"), dir.path().join("link"))
            .expect("symlink");
        std::os::unix::fs::symlink(outside_dir.path(), dir.path().join("out")).expect("symlink");
        let err = input_path(Some(dir.path()), "link").expect_err("refused");
        assert_eq!(err.code, "path_outside_data_dir");
        assert!(output_path(Some(dir.path()), "out/x.jsonl").is_err());
    }

    #[test]
    fn parts_join_in_order_and_disappear() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parts: Vec<PathBuf> = (0..3)
            .map(|i| dir.path().join(part_name("out", i)))
            .collect();
        std::fs::write(&parts[0], "a\n").expect("write");
        std::fs::write(&parts[2], "c\n").expect("write");
        let output = dir.path().join("out");
        join_parts(&output, &parts).expect("joined");
        assert_eq!(std::fs::read_to_string(&output).expect("read"), "a\nc\n");
        assert!(parts.iter().all(|part| !part.exists()));
    }
}
