//! What the process wrote to disk and what a database occupies there.

use std::io;
use std::path::Path;

/// Bytes this process has caused to be written to storage so far: `write_bytes` minus
/// `cancelled_write_bytes` from `/proc/self/io` (pages dirtied and then truncated or deleted before
/// writeback never reach the disk). The counters cover every thread of the process, so engines'
/// background flushes and compactions are included; they count only this process.
/// `None` where `/proc/self/io` is unavailable (not Linux, or a restricted container).
pub fn process_bytes_written() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/io").ok()?;
    parse_proc_io(&text)
}

fn parse_proc_io(text: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
    };
    let written = field("write_bytes")?;
    let cancelled = field("cancelled_write_bytes").unwrap_or(0);
    Some(written.saturating_sub(cancelled))
}

/// Space `dir` takes on disk: allocated blocks of every file below it (sparse and preallocated
/// files count what they really occupy). A missing directory is empty.
pub fn dir_size_on_disk(dir: &Path) -> io::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry?;
        // A file an engine deletes while we walk (compaction) simply no longer counts.
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            total += dir_size_on_disk(&entry.path())?;
        } else {
            total += allocated_bytes(&meta);
        }
    }
    Ok(total)
}

#[cfg(unix)]
fn allocated_bytes(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks() * 512
}

#[cfg(not(unix))]
fn allocated_bytes(meta: &std::fs::Metadata) -> u64 {
    meta.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_io_net_of_cancelled_writes() {
        let text = "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 5\nwrite_bytes: 8192\n\
                    cancelled_write_bytes: 4096\n";
        assert_eq!(parse_proc_io(text), Some(4096));
        assert_eq!(parse_proc_io("rchar: 1\n"), None);
    }

    #[test]
    fn dir_size_counts_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(dir_size_on_disk(&dir.path().join("absent")).unwrap(), 0);
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![1u8; 10_000]).unwrap();
        let size = dir_size_on_disk(dir.path()).unwrap();
        assert!(size >= 10_000, "size {size}");
    }
}
