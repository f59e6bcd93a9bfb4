//! The pidfile: the daemon's pid and a newline, locked with `flock` for the daemon's
//! whole life and removed at every exit we control; and the lookup `-s`/`-k`/`-r` use.
//!
//! The lock, not the pid, says whether a daemon runs: a locked file names a live
//! daemon whatever its binary is called, an unlocked one is stale whatever process now
//! has its pid. pgqd 3.5 only checks that the pid is alive, so it refuses to start when
//! the pid was reused and signals whatever process reused it. One exception: pgqd 3.5
//! itself never locks, so an unlocked file naming a live process called `pgqd` (not
//! us) is a running daemon too; starting beside it would tick every database twice.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::config::io_reason;

/// How often a start retries when the file it locked was removed meanwhile by an
/// exiting daemon; more means something keeps replacing the file.
const LOCK_ATTEMPTS: usize = 10;

/// A daemon writes its pid right after taking the lock; a reader that sees the lock
/// but no pid yet waits this long at most for it.
const PID_WAIT: Duration = Duration::from_secs(1);

/// An owned pidfile: the open file holds the lock. Dropping it removes the file if it
/// still holds our pid, then releases the lock (in that order, so a starting instance
/// never locks a file that is about to disappear without noticing).
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    _lock: Flock<File>,
}

/// What a pidfile says about a running daemon.
#[derive(Debug, PartialEq, Eq)]
pub enum Holder {
    /// No file, or nobody holds its lock (stale), or no pid in it.
    NotRunning,
    /// A live daemon holds the lock; its pid is in the file.
    Running(i32),
}

/// Finds the daemon holding the pidfile at `path`. Trying a shared lock never disturbs
/// the holder's exclusive one; when it succeeds, nobody holds the file.
pub fn holder(path: &Path) -> Holder {
    let Ok(file) = File::open(path) else {
        return Holder::NotRunning;
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Err((file, Errno::EWOULDBLOCK)) => {
            locked_pid(&file).map_or(Holder::NotRunning, Holder::Running)
        }
        Ok(unlocked) => unlocking_pgqd(&unlocked).map_or(Holder::NotRunning, Holder::Running),
        Err(_) => Holder::NotRunning,
    }
}

/// The pid in an unlocked pidfile when it is a live process called `pgqd` other than
/// this one: a daemon that does not lock its pidfile (pgqd 3.5).
fn unlocking_pgqd(file: &File) -> Option<i32> {
    let pid = read_pid(file).filter(|pid| *pid != std::process::id() as i32)?;
    let name = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (name.trim_end() == "pgqd").then_some(pid)
}

/// The pid in a locked pidfile, waiting briefly for a daemon that has just locked it.
fn locked_pid(file: &File) -> Option<i32> {
    let start = std::time::Instant::now();
    loop {
        let pid = read_pid(file);
        if pid.is_some() || start.elapsed() > PID_WAIT {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_pid(mut file: &File) -> Option<i32> {
    let mut text = String::new();
    std::io::Seek::rewind(&mut file).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok().filter(|pid| *pid > 0)
}

impl Pidfile {
    /// Takes the pidfile for this process: locks it, then writes our pid. A file left
    /// by a dead daemon is stale (`on_stale` is told, so it can log) and overwritten; a
    /// locked one, or one naming a running pgqd that does not lock, makes this fail
    /// with the holder's pid.
    pub fn create(path: &Path, on_stale: impl FnOnce()) -> Result<Pidfile, String> {
        let mut lock = lock_current_file(path)?;
        if let Some(pid) = unlocking_pgqd(&lock) {
            return Err(format!(
                "pidfile exists, another instance running? (\"{}\" names pid {pid}, a \
                 running pgqd that does not lock its pidfile, such as pgqd 3.5)",
                path.display()
            ));
        }
        if lock.metadata().is_ok_and(|m| m.len() > 0) {
            on_stale();
        }
        // From the start: reading the old pid above moved the file's offset.
        lock.set_len(0)
            .and_then(|()| std::io::Seek::rewind(&mut *lock))
            .and_then(|()| writeln!(lock, "{}", std::process::id()))
            .map_err(|e| describe("cannot write pidfile", path, &e))?;
        Ok(Pidfile {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens (creating if needed) and exclusively locks the file at `path`. An exiting
/// daemon removes its file while still holding the lock, so a file we locked may
/// already be unlinked: then the path names another file (or none) and we try again.
fn lock_current_file(path: &Path) -> Result<Flock<File>, String> {
    for _ in 0..LOCK_ATTEMPTS {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| describe("cannot open pidfile", path, &e))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((file, Errno::EWOULDBLOCK)) => return Err(held_by_another(path, &file)),
            Err((_, errno)) => return Err(describe("cannot lock pidfile", path, &errno.into())),
        };
        if same_file(path, &lock) {
            return Ok(lock);
        }
    }
    Err(format!(
        "cannot lock pidfile \"{}\": it keeps being replaced",
        path.display()
    ))
}

fn same_file(path: &Path, file: &File) -> bool {
    match (fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// pgqd 3.5's message, followed by the pidfile and the holder's pid.
fn held_by_another(path: &Path, file: &File) -> String {
    let holder = match locked_pid(file) {
        Some(pid) => format!("locked by pid {pid}"),
        None => "locked".into(),
    };
    format!(
        "pidfile exists, another instance running? (\"{}\" is {holder})",
        path.display()
    )
}

fn describe(what: &str, path: &Path, error: &std::io::Error) -> String {
    format!("{what} \"{}\": {}", path.display(), io_reason(error))
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

    fn own_pid() -> i32 {
        std::process::id() as i32
    }

    /// A pidfile is created with our pid and a newline, found through its lock while we
    /// hold it, refused to a second taker with our pid named, and removed on drop.
    #[test]
    fn lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pid");
        let pidfile = Pidfile::create(&path, || panic!("not stale")).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        assert_eq!(holder(&path), Holder::Running(own_pid()));
        let second = Pidfile::create(&path, || panic!("not stale")).unwrap_err();
        assert_eq!(
            second,
            format!(
                "pidfile exists, another instance running? (\"{}\" is locked by pid {})",
                path.display(),
                own_pid()
            )
        );
        drop(pidfile);
        assert!(!path.exists());
        assert_eq!(holder(&path), Holder::NotRunning);
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

    /// An unlocked pidfile is stale even when its pid is alive (here: our own), and a
    /// longer old content is fully replaced.
    #[test]
    fn unlocked_is_stale_whatever_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pid");
        fs::write(&path, format!("{}\nleftover text\n", own_pid())).unwrap();
        assert_eq!(holder(&path), Holder::NotRunning);
        let mut stale = false;
        let _pidfile = Pidfile::create(&path, || stale = true).unwrap();
        assert!(stale);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", own_pid())
        );
    }

    /// A pidfile that cannot be opened (its directory is missing) is an error naming it.
    #[test]
    fn unopenable_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none/p.pid");
        let error = Pidfile::create(&path, || {}).unwrap_err();
        assert!(error.starts_with("cannot open pidfile \""), "{error}");
        assert!(error.contains("none/p.pid"), "{error}");
    }

    /// A live process called `pgqd` named in an unlocked pidfile (what pgqd 3.5 leaves)
    /// is a running daemon: found by `holder`, and a start is refused naming its pid.
    #[test]
    fn unlocked_but_named_pgqd_is_running() {
        let dir = tempfile::tempdir().unwrap();
        // A real process whose name is pgqd: sleep under that name.
        let program = dir.path().join("pgqd");
        fs::copy("/bin/sleep", &program).unwrap();
        let mut child = std::process::Command::new(&program)
            .arg("600")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Until the child has exec'd, it bears the test binary's name: wait for it.
        let comm = format!("/proc/{pid}/comm");
        let named = (0..500).any(|_| {
            let name = fs::read_to_string(&comm).unwrap_or_default();
            name.trim() == "pgqd" || {
                std::thread::sleep(std::time::Duration::from_millis(10));
                false
            }
        });
        assert!(named, "the child never showed the name pgqd");
        let path = dir.path().join("p.pid");
        fs::write(&path, format!("{pid}\n")).unwrap();
        let found = holder(&path);
        let refused = Pidfile::create(&path, || panic!("not stale"));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, Holder::Running(pid));
        let error = refused.unwrap_err();
        assert!(
            error.starts_with("pidfile exists, another instance running?")
                && error.contains(&format!("names pid {pid}")),
            "{error}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{pid}\n"));
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
