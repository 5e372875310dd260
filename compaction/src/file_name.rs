//! The names of the files in a database directory, and their parser for the engine's cleanup
//! of obsolete files.
//!
//! | kind             | name                 | example          |
//! |------------------|----------------------|------------------|
//! | table            | `{number:06}.sst`    | `000012.sst`     |
//! | write-ahead log  | `{number:06}.log`    | `000011.log`     |
//! | manifest         | `MANIFEST-{number:06}` | `MANIFEST-000010` |
//! | temporary file   | `{number:06}.tmp`    | `000013.tmp`     |
//! | manifest pointer | `CURRENT`            |                  |
//! | its staging copy | `CURRENT.tmp`        |                  |
//! | process lock     | `LOCK`               |                  |
//!
//! All numbered files share one counter (`next_file_number` in the manifest), so a number
//! names at most one file and is never reused.

/// Name of the file that names the live manifest.
pub const CURRENT_FILE_NAME: &str = "CURRENT";
/// Name of the staging file that is renamed over [`CURRENT_FILE_NAME`].
pub const CURRENT_TEMP_FILE_NAME: &str = "CURRENT.tmp";
/// Name of the lock file held by the process that has the database open.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// What a file in a database directory is, as told by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// A sorted table `{n:06}.sst`.
    Table(u64),
    /// A write-ahead log `{n:06}.log`.
    Log(u64),
    /// A manifest `MANIFEST-{n:06}`.
    Manifest(u64),
    /// A file being built under a number, `{n:06}.tmp` (garbage after a crash).
    Temp(u64),
    /// `CURRENT`, naming the live manifest.
    Current,
    /// `CURRENT.tmp`, the staging copy of `CURRENT` (garbage after a crash).
    CurrentTemp,
    /// `LOCK`.
    Lock,
}

/// `{number:06}.sst`.
///
/// ```
/// assert_eq!(strata_compaction::table_file_name(12), "000012.sst");
/// ```
pub fn table_file_name(number: u64) -> String {
    format!("{number:06}.sst")
}

/// `{number:06}.log`.
pub fn log_file_name(number: u64) -> String {
    format!("{number:06}.log")
}

/// `MANIFEST-{number:06}`.
pub fn manifest_file_name(number: u64) -> String {
    format!("MANIFEST-{number:06}")
}

/// `{number:06}.tmp`.
pub fn temp_file_name(number: u64) -> String {
    format!("{number:06}.tmp")
}

/// What the file called `name` is, or `None` for a name strata never writes.
///
/// Only canonical names parse (`0000012.sst` or `+12.sst` do not), so that cleanup never
/// deletes a file strata did not create under exactly that name.
///
/// ```
/// use strata_compaction::{parse_file_name, FileKind};
/// assert_eq!(parse_file_name("000012.sst"), Some(FileKind::Table(12)));
/// assert_eq!(parse_file_name("MANIFEST-000003"), Some(FileKind::Manifest(3)));
/// assert_eq!(parse_file_name("CURRENT"), Some(FileKind::Current));
/// assert_eq!(parse_file_name("12.sst"), None);
/// assert_eq!(parse_file_name("notes.txt"), None);
/// ```
pub fn parse_file_name(name: &str) -> Option<FileKind> {
    match name {
        CURRENT_FILE_NAME => return Some(FileKind::Current),
        CURRENT_TEMP_FILE_NAME => return Some(FileKind::CurrentTemp),
        LOCK_FILE_NAME => return Some(FileKind::Lock),
        _ => {}
    }
    if let Some(digits) = name.strip_prefix("MANIFEST-") {
        let n = parse_number(digits)?;
        return (manifest_file_name(n) == name).then_some(FileKind::Manifest(n));
    }
    let (digits, ext) = name.split_once('.')?;
    let n = parse_number(digits)?;
    let (kind, canonical) = match ext {
        "sst" => (FileKind::Table(n), table_file_name(n)),
        "log" => (FileKind::Log(n), log_file_name(n)),
        "tmp" => (FileKind::Temp(n), temp_file_name(n)),
        _ => return None,
    };
    (canonical == name).then_some(kind)
}

fn parse_number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn names_round_trip(n in any::<u64>()) {
            prop_assert_eq!(parse_file_name(&table_file_name(n)), Some(FileKind::Table(n)));
            prop_assert_eq!(parse_file_name(&log_file_name(n)), Some(FileKind::Log(n)));
            prop_assert_eq!(parse_file_name(&manifest_file_name(n)), Some(FileKind::Manifest(n)));
            prop_assert_eq!(parse_file_name(&temp_file_name(n)), Some(FileKind::Temp(n)));
        }

        #[test]
        fn parser_never_panics(s in ".{0,24}") {
            let _ = parse_file_name(&s);
        }
    }

    #[test]
    fn non_canonical_names_are_rejected() {
        for bad in [
            "0000012.sst",
            "12.sst",
            "+00012.sst",
            "000012.sst.bak",
            "000012.SST",
            ".sst",
            "MANIFEST-",
            "MANIFEST-12",
            "MANIFEST-+00012",
            "CURRENT.bak",
            "lock",
            "99999999999999999999.log",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
        assert_eq!(parse_file_name("1234567.log"), Some(FileKind::Log(1_234_567)));
        assert_eq!(parse_file_name("CURRENT.tmp"), Some(FileKind::CurrentTemp));
        assert_eq!(parse_file_name("LOCK"), Some(FileKind::Lock));
    }
}
