//! What start-up will need of the logfile and pidfile paths, checked for `--check`:
//! neither is a directory, and each one's directory exists and is writable (the
//! logfile is opened for appending there, the pidfile created and removed).

use std::path::Path;

use nix::unistd::{AccessFlags, access};

use super::{Config, ConfigError, Origins};

/// Checks `logfile` and `pidfile` of `config`; the error names the key, the path and
/// where it was set.
pub fn check_paths(config: &Config, origins: &Origins) -> Result<(), ConfigError> {
    let keys = [("logfile", &config.logfile), ("pidfile", &config.pidfile)];
    for (key, path) in keys {
        let Some(path) = path else { continue };
        check(path, key == "logfile").map_err(|reason| ConfigError::Value {
            key: key.into(),
            value: Some(path.display().to_string()),
            origin: origins.of(key).clone(),
            reason,
        })?;
    }
    Ok(())
}

/// `appended`: the file is kept and appended to (the logfile), so it must be writable
/// itself; a pidfile is replaced.
fn check(path: &Path, appended: bool) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a directory".into());
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let shown = || super::escape(&dir.display().to_string());
    if !dir.is_dir() {
        return Err(format!("directory \"{}\" does not exist", shown()));
    }
    if access(dir, AccessFlags::W_OK | AccessFlags::X_OK).is_err() {
        return Err(format!("directory \"{}\" is not writable", shown()));
    }
    if appended && path.exists() && access(path, AccessFlags::W_OK).is_err() {
        return Err("file is not writable".into());
    }
    Ok(())
}
