//! What the process environment contributes: the PG* variables (behind a lookup
//! function, so tests never touch the real environment), the home directory and the
//! OS user name.

use std::path::PathBuf;

/// Looks up an environment variable for [`resolve_with`](crate::resolve_with);
/// [`resolve`](crate::resolve) uses the process environment, tests pass a map.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment. A variable that is set but not valid UTF-8 counts as unset.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The home directory: `$HOME` when set and not empty, else the passwd entry, as
/// recent libpq releases (`pqGetHomeDirectory`) do.
pub(crate) fn home_dir(env: Env<'_>) -> Option<PathBuf> {
    if let Some(home) = env("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home));
    }
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
}

/// A file under the home directory, or nothing when there is no home directory.
pub(crate) fn in_home(env: Env<'_>, relative: &str) -> Option<PathBuf> {
    home_dir(env).map(|home| home.join(relative))
}

/// The default user name: the effective OS user, as libpq's `pg_fe_getusername`.
pub(crate) fn os_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
}
