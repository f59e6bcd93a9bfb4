//! What stands in front of the endpoints: TLS, basic auth and response headers, as
//! the web config says, and when to read it again. The listener holds one [`Guard`]
//! at a time and swaps it whole: on SIGHUP, and when one of its files changed (looked
//! at, at most once a second, when a connection arrives), so a rotated certificate
//! is served without a restart. A new guard that does not build is logged and the
//! old one kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_rustls::TlsAcceptor;
use tracing::{error, info, warn};

use super::auth::Users;
use super::web_config::{WebConfig, WebConfigError};

/// The files are looked at no more often than this.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The security of the listener for one version of the web config.
pub struct Guard {
    pub tls: Option<TlsAcceptor>,
    /// `None`: no basic auth.
    pub users: Option<Users>,
    pub headers: Vec<(String, String)>,
    /// What it was built from, `None` without `http_web_config`.
    pub config: Option<WebConfig>,
}

impl Guard {
    /// The open listener of a config without `http_web_config`.
    pub fn open() -> Guard {
        Guard {
            tls: None,
            users: None,
            headers: Vec::new(),
            config: None,
        }
    }

    /// Reads the web config at `path` and every file it names.
    pub fn load(path: &Path) -> Result<Guard, WebConfigError> {
        let config = WebConfig::load(path)?;
        let tls = match &config.tls {
            Some(tls) => Some(TlsAcceptor::from(super::tls::server_config(tls).map_err(
                |reason| WebConfigError {
                    path: path.to_path_buf(),
                    reason,
                },
            )?)),
            None => None,
        };
        Ok(Guard {
            tls,
            users: (!config.users.is_empty()).then(|| Users::new(config.users.clone())),
            headers: config.headers.clone(),
            config: Some(config),
        })
    }

    /// A guard for `path` (`None`: open).
    pub fn for_path(path: Option<&Path>) -> Result<Guard, WebConfigError> {
        path.map_or_else(|| Ok(Guard::open()), Guard::load)
    }

    fn describe(&self) -> String {
        self.config
            .as_ref()
            .map_or("open: no http_web_config".into(), WebConfig::summary)
    }
}

/// The file states a guard was built from: modification time, size and inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<Option<(SystemTime, u64, u64)>>);

impl Stamp {
    fn of(files: &[PathBuf]) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp(
            files
                .iter()
                .map(|f| {
                    let m = std::fs::metadata(f).ok()?;
                    Some((m.modified().ok()?, m.len(), m.ino()))
                })
                .collect(),
        )
    }
}

/// The current guard and what it takes to notice it is out of date; owned by the
/// accept loop, the only writer.
pub struct Keeper {
    path: Option<PathBuf>,
    current: Arc<Guard>,
    files: Vec<PathBuf>,
    stamp: Stamp,
    looked: Instant,
    /// The stamp of a change that failed to load, so it is logged once.
    failed: Option<Stamp>,
}

impl Keeper {
    /// Builds the first guard; an error here stops start-up.
    pub fn start(path: Option<&Path>) -> Result<Keeper, WebConfigError> {
        let guard = Guard::for_path(path)?;
        let files = guard
            .config
            .as_ref()
            .map(WebConfig::files)
            .unwrap_or_default();
        if path.is_some() {
            info!("HTTP listener: {}", guard.describe());
        }
        Ok(Keeper {
            path: path.map(Path::to_path_buf),
            current: Arc::new(guard),
            stamp: Stamp::of(&files),
            files,
            looked: Instant::now(),
            failed: None,
        })
    }

    pub fn current(&self) -> Arc<Guard> {
        self.current.clone()
    }

    /// SIGHUP: reads `path` again (the key may have changed), whatever the files say.
    pub fn reload(&mut self, path: Option<&Path>) {
        if path.is_none() && self.path.is_none() {
            return;
        }
        if path.is_none() {
            warn!("http_web_config removed: the HTTP listener serves plain HTTP to anyone");
        }
        self.path = path.map(Path::to_path_buf);
        self.rebuild(true);
    }

    /// Rebuilds when a file changed since the last look (at most once a second).
    pub fn refresh(&mut self) {
        if self.path.is_none() || self.looked.elapsed() < LOOK_EVERY {
            return;
        }
        self.looked = Instant::now();
        let stamp = Stamp::of(&self.files);
        if stamp != self.stamp && self.failed.as_ref() != Some(&stamp) {
            self.rebuild(false);
        }
    }

    fn rebuild(&mut self, asked: bool) {
        match Guard::for_path(self.path.as_deref()) {
            Ok(guard) => {
                self.files = guard
                    .config
                    .as_ref()
                    .map(WebConfig::files)
                    .unwrap_or_default();
                self.stamp = Stamp::of(&self.files);
                self.failed = None;
                let why = if asked {
                    "reloaded"
                } else {
                    "changed on disk, reloaded"
                };
                info!("HTTP listener {why}: {}", guard.describe());
                self.current = Arc::new(guard);
            }
            Err(e) => {
                error!("{e}; the HTTP listener keeps its previous settings");
                self.failed = Some(Stamp::of(&self.files));
            }
        }
    }
}
