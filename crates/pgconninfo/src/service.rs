//! Connection service files (`pg_service.conf`): where they are and how one service's
//! settings are read, as libpq's `parseServiceInfo` does.
//!
//! The per-user file (`servicefile`, `PGSERVICEFILE`, else `~/.pg_service.conf`) is
//! read first; only when it does not define the service is the system file
//! (`$PGSYSCONFDIR/pg_service.conf`, else Debian's `/etc/postgresql-common/pg_service.conf`)
//! read. A missing file is skipped; a service found in neither is an error.

use std::path::{Path, PathBuf};

use crate::env::{self, Env};
use crate::error::{ConnInfoError, Origin};
use crate::setting::Setting;

/// Where Debian's libpq looks for the system-wide file (its `--sysconfdir`).
const SYSTEM_DIR: &str = "/etc/postgresql-common";

/// The settings of service `name`, first occurrence of a key first.
pub(crate) fn lookup(
    name: &str,
    user_file: Option<&str>,
    env: Env<'_>,
) -> Result<Vec<Setting>, ConnInfoError> {
    let user = user_file
        .map(PathBuf::from)
        .or_else(|| env::in_home(env, ".pg_service.conf"));
    let system = env("PGSYSCONFDIR")
        .map_or_else(|| PathBuf::from(SYSTEM_DIR), PathBuf::from)
        .join("pg_service.conf");
    for path in user.iter().chain(std::iter::once(&system)) {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ConnInfoError::Service(format!(
                    "service file \"{}\" not readable: {e}",
                    path.display()
                )));
            }
        };
        if let Some(settings) = section(&text, name, path)? {
            return Ok(settings);
        }
    }
    Err(ConnInfoError::Service(format!(
        "definition of service \"{}\" not found",
        name.escape_debug()
    )))
}

/// The settings of section `[name]` in `text`, or `None` if there is no such section.
/// Lines are trimmed; `#` starts a comment line; a value is everything after the first
/// `=`. A `service` key inside a service is refused, as libpq does.
pub(crate) fn section(
    text: &str,
    name: &str,
    path: &Path,
) -> Result<Option<Vec<Setting>>, ConnInfoError> {
    let mut found: Option<Vec<Setting>> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            if found.is_some() {
                break;
            }
            if header.strip_suffix(']') == Some(name) {
                found = Some(Vec::new());
            }
            continue;
        }
        let Some(settings) = found.as_mut() else {
            continue;
        };
        let error = |what: &str| {
            ConnInfoError::Service(format!(
                "{what} in service file \"{}\", line {}",
                path.display(),
                index + 1
            ))
        };
        let (key, value) = line.split_once('=').ok_or_else(|| error("syntax error"))?;
        if key == "service" {
            return Err(error("nested service specifications not supported"));
        }
        let origin = Origin::Service {
            file: path.to_path_buf(),
            line: index + 1,
        };
        settings.push(Setting::new(key, value, origin));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# comment\n[other]\nhost=wrong\n\n  [mydb]  \nhost=somehost\nport=5433\n  user=admin  \noptions=-c a=b\n[next]\nhost=x\n";

    fn read(text: &str, name: &str) -> Option<Vec<(String, String, usize)>> {
        section(text, name, Path::new("/f")).unwrap().map(|s| {
            s.into_iter()
                .map(|s| (s.key, s.value, line(&s.origin)))
                .collect()
        })
    }

    fn line(origin: &Origin) -> usize {
        match origin {
            Origin::Service { line, .. } => *line,
            _ => 0,
        }
    }

    /// Only the named section is read, with line numbers; other sections are skipped.
    #[test]
    fn reads_one_section() {
        let got = read(FILE, "mydb").unwrap();
        let keys: Vec<_> = got.iter().map(|(k, v, _)| format!("{k}={v}")).collect();
        assert_eq!(
            keys,
            ["host=somehost", "port=5433", "user=admin", "options=-c a=b"]
        );
        assert_eq!(got[0].2, 6);
        assert!(read(FILE, "nope").is_none());
        assert!(read(FILE, "mydb]").is_none());
    }

    /// Malformed lines and nested services are refused with file and line.
    #[test]
    fn refuses_bad_lines() {
        let err = section("[a]\nhost\n", "a", Path::new("/f"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "syntax error in service file \"/f\", line 2");
        let err = section("[a]\nservice=b\n", "a", Path::new("/f"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("nested service specifications"), "{err}");
        assert!(
            section("[b]\nhost\n", "a", Path::new("/f"))
                .unwrap()
                .is_none()
        );
    }

    /// The user file wins; the system file is read when the user file lacks the service.
    #[test]
    fn user_file_then_system_file() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("user.conf");
        std::fs::write(&user, "[a]\nport=1\n").unwrap();
        std::fs::write(
            dir.path().join("pg_service.conf"),
            "[a]\nport=2\n[b]\nport=3\n",
        )
        .unwrap();
        let sysconf = dir.path().to_str().unwrap().to_string();
        let env = move |name: &str| (name == "PGSYSCONFDIR").then(|| sysconf.clone());
        let port = |name: &str| lookup(name, user.to_str(), &env).map(|s| s[0].value.clone());
        assert_eq!(port("a").unwrap(), "1");
        assert_eq!(port("b").unwrap(), "3");
        let err = port("c").unwrap_err().to_string();
        assert_eq!(err, "definition of service \"c\" not found");
    }
}
