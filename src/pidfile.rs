//! The pidfile: created exclusively with the pid and a newline, refused while a live
//! pgqd holds it, replaced when stale, removed at every exit we control; and the
//! lookup `-s`/`-k`/`-r` use to find the daemon.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::config::io_reason;

/// An owned pidfile; dropping it removes the file if it still holds our pid.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
}

/// What a pidfile says about a running daemon.
#[derive(Debug, PartialEq, Eq)]
pub enum Holder {
    /// No file, no pid in it, or the process is gone.
    NotRunning,
    /// The pid is alive but is not a pgqd (the pid was reused): pgqd 3.5 would signal it.
    Foreign(i32),
    /// A live pgqd.
    Running(i32),
}

/// Reads the pidfile and checks the process behind it.
pub fn holder(path: &Path) -> Holder {
    let Ok(text) = fs::read_to_string(path) else {
        return Holder::NotRunning;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return Holder::NotRunning;
    };
    if pid <= 0 || kill(Pid::from_raw(pid), None).is_err() {
        return Holder::NotRunning;
    }
    if is_pgqd(pid) {
        Holder::Running(pid)
    } else {
        Holder::Foreign(pid)
    }
}

/// Whether the process's program name (argv[0]) is a pgqd.
fn is_pgqd(pid: i32) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        // No /proc (not Linux): trust the pid, as pgqd does.
        return true;
    };
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let name = Path::new(std::ffi::OsStr::from_bytes(argv0));
    name.file_name()
        .is_some_and(|n| n.to_string_lossy().contains("pgqd"))
}

impl Pidfile {
    /// Takes the pidfile for this process. A stale file is removed (and `on_stale`
    /// told so it can log); a live pgqd makes this fail.
    pub fn create(path: &Path, on_stale: impl FnOnce()) -> Result<Pidfile, String> {
        match holder(path) {
            Holder::Running(_) => return Err("pidfile exists, another instance running?".into()),
            Holder::NotRunning | Holder::Foreign(_) if path.exists() => {
                on_stale();
                fs::remove_file(path).map_err(|e| {
                    format!(
                        "cannot remove stale pidfile \"{}\": {}",
                        path.display(),
                        io_reason(&e)
                    )
                })?;
            }
            _ => {}
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| {
                format!(
                    "cannot create pidfile \"{}\": {}",
                    path.display(),
                    io_reason(&e)
                )
            })?;
        writeln!(file, "{}", std::process::id()).map_err(|e| {
            format!(
                "cannot write pidfile \"{}\": {}",
                path.display(),
                io_reason(&e)
            )
        })?;
        Ok(Pidfile {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes the pidfile at `path` if it names this process.
pub fn remove_own(path: &Path) {
    let ours = fs::read_to_string(path).is_ok_and(|t| t.trim() == std::process::id().to_string());
    if ours {
        let _ = fs::remove_file(path);
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        remove_own(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pidfile is created with our pid and a newline, refused while we live, and
    /// removed on drop.
    #[test]
    fn lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pid");
        let pidfile = Pidfile::create(&path, || panic!("not stale")).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        // The test binary's name is not pgqd... unless it is: accept either verdict.
        assert!(matches!(
            holder(&path),
            Holder::Foreign(_) | Holder::Running(_)
        ));
        drop(pidfile);
        assert!(!path.exists());
    }

    /// A pidfile naming a dead process is stale: reported and replaced.
    #[test]
    fn stale_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pid");
        fs::write(&path, "999999999\n").unwrap();
        assert_eq!(holder(&path), Holder::NotRunning);
        let mut stale = false;
        let _pidfile = Pidfile::create(&path, || stale = true).unwrap();
        assert!(stale);
    }

    /// Garbage in a pidfile means nothing is running.
    #[test]
    fn garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pid");
        fs::write(&path, "abc").unwrap();
        assert_eq!(holder(&path), Holder::NotRunning);
        assert_eq!(holder(&dir.path().join("none")), Holder::NotRunning);
    }
}
