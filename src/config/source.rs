//! Reading a config file or a secret file with limits: a regular file only (checked
//! before opening, so a FIFO cannot block us and `/dev/zero` is never read), and at
//! most [`MAX_BYTES`], also enforced while reading in case the file grows meanwhile.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The largest file we read: pgqd.ini files are a few kilobytes.
pub const MAX_BYTES: u64 = 1 << 20;

/// The bytes of the file at `path`, or why it cannot be used (an io error reason).
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    check(&std::fs::metadata(path).map_err(|e| super::io_reason(&e))?)?;
    let file = File::open(path).map_err(|e| super::io_reason(&e))?;
    check(&file.metadata().map_err(|e| super::io_reason(&e))?)?;
    read_bounded(file)
}

/// At most [`MAX_BYTES`] from `reader`, whatever the size it announced: files in
/// /proc say 0 (`/proc/kallsyms` holds megabytes), and a file may grow.
fn read_bounded(reader: impl Read) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| super::io_reason(&e))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

fn check(metadata: &std::fs::Metadata) -> Result<(), String> {
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    if metadata.len() > MAX_BYTES {
        return Err(too_large());
    }
    Ok(())
}

fn too_large() -> String {
    format!("larger than {MAX_BYTES} bytes (1 MiB)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endless reader stops one byte past the limit; the limit itself is allowed.
    #[test]
    fn bounded_while_reading() {
        let endless = read_bounded(std::io::repeat(b'#')).unwrap_err();
        assert_eq!(endless, "larger than 1048576 bytes (1 MiB)");
        let exact = read_bounded(std::io::repeat(b'#').take(MAX_BYTES)).unwrap();
        assert_eq!(exact.len() as u64, MAX_BYTES);
    }
}
