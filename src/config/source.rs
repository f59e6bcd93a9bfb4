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
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
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
