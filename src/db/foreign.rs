//! The watch for another ticker in a database (pgqd 3.5 left running on another host,
//! a cron job): one line when one is seen, naming it, a reminder a minute while it
//! lasts, one line when it is gone; shown in the metrics and `/status` meanwhile.
//! Both tickers tick every queue: measured, that costs ticks, not events (none was
//! delivered twice or lost), but each queue gets twice the ticks and the operator
//! believes one daemon does the work.

use tokio::time::Instant;
use tracing::{info, warn};

use super::context::DbContext;
use crate::jobs::Job;
use crate::jobs::watch::Seen;
use crate::stats::{OtherTicker, REPEAT_LOG_INTERVAL};

/// What is known of other tickers in one database.
#[derive(Debug, Default)]
pub struct ForeignWatch {
    /// The other ticker being reported, since when, and when last reminded of.
    seen: Option<(OtherTicker, Instant, Instant)>,
    /// The role cannot see other sessions' statements: said once.
    told_hidden: bool,
}

impl ForeignWatch {
    /// Whether another ticker was seen at the last look.
    pub fn seeing(&self) -> bool {
        self.seen.is_some()
    }

    /// Takes in one look's findings: logs what changed and shows it in the stats.
    pub fn saw(&mut self, ctx: &DbContext, seen: Seen) {
        if seen.hidden && !self.told_hidden {
            self.told_hidden = true;
            warn!(
                job = %Job::Watch,
                "cannot see other sessions' statements in this database (grant pg_read_all_stats to pgqd's role): another ticker here would go unnoticed"
            );
        }
        let now = Instant::now();
        match (self.seen.take(), seen.tickers.into_iter().next()) {
            (None, Some(other)) => {
                warn!(
                    job = %Job::Watch,
                    pid = other.pid,
                    "another ticker calls pgq.ticker() in this database: pid {}, application_name \"{}\", client {}, backend start {}, statement \"{}\"; both tick every queue: stop the other one (a pgqd 3.5 left running?)",
                    other.pid, other.application_name, other.client, other.backend_start, one_line(&other.query)
                );
                ctx.stats.set_foreign_ticker(Some(other.clone()));
                self.seen = Some((other, now, now));
            }
            (Some((_, since, reminded)), Some(other)) => {
                let reminded = if now.duration_since(reminded) >= REPEAT_LOG_INTERVAL {
                    warn!(
                        job = %Job::Watch,
                        pid = other.pid,
                        "another ticker still calls pgq.ticker() in this database (pid {}, application_name \"{}\") for {} s",
                        other.pid, other.application_name, now.duration_since(since).as_secs()
                    );
                    now
                } else {
                    reminded
                };
                ctx.stats.set_foreign_ticker(Some(other.clone()));
                self.seen = Some((other, since, reminded));
            }
            (Some((other, since, _)), None) => {
                info!(
                    job = %Job::Watch,
                    pid = other.pid,
                    "the other ticker (pid {}) no longer calls pgq.ticker() in this database, after {} s",
                    other.pid, now.duration_since(since).as_secs()
                );
                ctx.stats.set_foreign_ticker(None);
            }
            (None, None) => {}
        }
    }
}

/// A statement on one line, at most 200 characters.
fn one_line(query: &str) -> String {
    let flat: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().take(200).collect()
}
