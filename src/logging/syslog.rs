//! The syslog sink: libc's openlog/syslog with LOG_PID, as pgqd.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;

use crate::config::Config;

/// An open syslog connection. The ident string must outlive every `syslog()` call,
/// so it is owned here; a replacement calls `openlog` before the old one is dropped.
pub struct Syslog {
    _ident: CString,
}

impl Syslog {
    /// Syslog is on when `syslog` is non-zero, except when stderr already goes to the
    /// journal (systemd sets JOURNAL_STREAM to its device:inode): then each line would
    /// be stored twice.
    pub fn wanted(config: &Config) -> bool {
        config.syslog != 0 && !stderr_is_journal()
    }

    pub fn open(config: &Config) -> Syslog {
        let ident = CString::new(config.syslog_ident.replace('\0', "")).unwrap_or_default();
        // SAFETY: `ident` is a valid C string kept alive in the returned value for as long
        // as syslog may use it (see the struct comment).
        unsafe {
            libc::openlog(
                ident.as_ptr(),
                libc::LOG_PID,
                facility(&config.syslog_facility),
            )
        };
        Syslog { _ident: ident }
    }

    pub fn send(&self, tag: &str, body: &str) {
        let priority = match tag {
            "FATAL" => libc::LOG_CRIT,
            "ERROR" => libc::LOG_ERR,
            "WARNING" => libc::LOG_WARNING,
            "LOG" => libc::LOG_INFO,
            _ => libc::LOG_DEBUG,
        };
        let Ok(text) = CString::new(body.replace('\0', "")) else {
            return;
        };
        // SAFETY: both pointers are valid C strings; "%s" makes `text` data, not a format.
        unsafe { libc::syslog(priority, c"%s".as_ptr(), text.as_ptr()) };
    }
}

fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream == format!("{}:{}", meta.dev(), meta.ino())
}

fn facility(name: &str) -> libc::c_int {
    match name {
        "auth" => libc::LOG_AUTH,
        "authpriv" => libc::LOG_AUTHPRIV,
        "cron" => libc::LOG_CRON,
        "lpr" => libc::LOG_LPR,
        "mail" => libc::LOG_MAIL,
        "news" => libc::LOG_NEWS,
        "syslog" => libc::LOG_SYSLOG,
        "user" => libc::LOG_USER,
        "uucp" => libc::LOG_UUCP,
        "local0" => libc::LOG_LOCAL0,
        "local1" => libc::LOG_LOCAL1,
        "local2" => libc::LOG_LOCAL2,
        "local3" => libc::LOG_LOCAL3,
        "local4" => libc::LOG_LOCAL4,
        "local5" => libc::LOG_LOCAL5,
        "local6" => libc::LOG_LOCAL6,
        "local7" => libc::LOG_LOCAL7,
        _ => libc::LOG_DAEMON,
    }
}
