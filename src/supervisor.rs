//! The set of database tasks: lists the databases every check_period (sooner while the
//! set is new, at once after a reload or when a task finds its database gone), starts a
//! task for each new one, stops those that are gone, logs the stats line, applies
//! reloads, and shuts everything down within a deadline.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use pgconninfo::{Defaults, resolve};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::clock::Clocks;
use crate::config::Config;
use crate::db::engine::Engines;
use crate::db::{DbContext, DbTask, Outage};
use crate::jobs::Job;
use crate::jobs::watch::{LOOK_PERIOD, Look, YIELD_LOOK_PERIOD};
use crate::logging::db_label;
use crate::notify;
use crate::schedule::{Backoff, Every, until};
use crate::stats::{Snapshot, Stats};

/// At most this many connection attempts run at once, across all databases.
const PARALLEL_CONNECTS: usize = 32;
/// How often the supervisor's loop shows it is alive (`/livez`, `STATUS=`).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long shutdown waits for the database tasks before naming the late ones.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// After a start and after the set of databases changed, the next listings come after
/// this, doubling up to check_period: a sidecar started before its database exists
/// serves it within seconds of its creation, not a check_period later.
const FIRST_RELISTING: Duration = Duration::from_secs(1);

/// Requests from the signal handlers.
#[derive(Debug)]
pub enum Control {
    /// SIGHUP: a new, already validated config.
    Reload(Box<Config>),
    /// SIGHUP with a config that does not load: the old one keeps running.
    ReloadFailed(String),
}

/// A running database task.
struct Running {
    task: tokio::task::Id,
    stop: CancellationToken,
}

/// Owns the config and the database tasks.
pub struct Supervisor {
    config: Arc<Config>,
    settings: watch::Sender<Arc<Config>>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    control: mpsc::Receiver<Control>,
    /// The tasks of the databases served now, by name.
    running: BTreeMap<String, Running>,
    /// Tasks told to stop and not yet joined (a database gone, or a reconnect), by id:
    /// a database's entry leaves the stats only when its task has ended.
    stopping: HashMap<tokio::task::Id, String>,
    tasks: JoinSet<()>,
    /// Set by a task that found its database gone (3D000): list again at once.
    relist: Arc<Notify>,
    /// The latest look for other tickers, for every task; and when the next is due.
    looks: watch::Sender<Arc<Look>>,
    next_look: tokio::time::Instant,
    connect_slots: Arc<Semaphore>,
    clocks: Clocks,
    engines: Engines,
    discovery_outage: Outage,
    /// While listing the databases fails, it is tried again after this backoff
    /// rather than after a whole check_period.
    discovery_backoff: Backoff,
    /// While the set is new, listings come sooner than check_period (see
    /// [`FIRST_RELISTING`]).
    relisting: Backoff,
    /// A listing before the next check_period: after a failure or while the set is new.
    next_listing: Option<tokio::time::Instant>,
    /// The totals at the last stats line, so each line shows the figures since then.
    last_stats: Snapshot,
    /// Why the last reload failed, shown in `STATUS=` until a reload works.
    reload_failed: Option<String>,
    /// The last `STATUS=` line sent.
    status_line: String,
}

impl Supervisor {
    pub fn new(
        config: Config,
        stats: Arc<Stats>,
        shutdown: CancellationToken,
        control: mpsc::Receiver<Control>,
    ) -> Self {
        let config = Arc::new(config);
        let relisting = Backoff::between(FIRST_RELISTING, config.check_period);
        let clocks = Clocks::new();
        Supervisor {
            settings: watch::Sender::new(config.clone()),
            config,
            stats,
            shutdown,
            control,
            running: BTreeMap::new(),
            stopping: HashMap::new(),
            tasks: JoinSet::new(),
            relist: Arc::new(Notify::new()),
            looks: watch::Sender::new(Arc::new(Look::default())),
            next_look: tokio::time::Instant::now(),
            connect_slots: Arc::new(Semaphore::new(PARALLEL_CONNECTS)),
            clocks: clocks.clone(),
            engines: Engines::new(clocks),
            discovery_outage: Outage::default(),
            discovery_backoff: Backoff::new(),
            relisting,
            next_listing: None,
            last_stats: Snapshot::default(),
            reload_failed: None,
            status_line: String::new(),
        }
    }

    /// The live settings, as every task sees them.
    pub fn settings(&self) -> watch::Receiver<Arc<Config>> {
        self.settings.subscribe()
    }

    pub async fn run(mut self) {
        if self.config.database_list.is_empty() {
            info!("auto-detecting dbs ...");
        }
        self.refresh().await;
        notify::ready();
        let mut check = Every::new(self.config.check_period);
        let mut stats_line = Every::new(self.config.stats_period);
        let mut beat = Every::new(HEARTBEAT);
        check.tick().await;
        stats_line.tick().await;
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                _ = beat.tick() => self.beat(),
                _ = check.tick() => self.refresh().await,
                _ = until(self.next_listing) => self.refresh().await,
                _ = self.relist.notified() => self.refresh().await,
                _ = tokio::time::sleep_until(self.next_look) => self.look().await,
                _ = stats_line.tick() => self.stats_line(),
                Some(control) = self.control.recv() => {
                    self.apply(control).await;
                    check.set_period(self.config.check_period);
                    stats_line.set_period(self.config.stats_period);
                }
                Some(ended) = self.tasks.join_next_with_id() => {
                    self.task_ended(ended);
                    self.stats.set_tasks(self.tasks.len());
                }
            }
        }
        notify::stopping();
        self.stop_all().await;
    }

    /// Liveness for `/livez`, and the one-line summary for systemd's `STATUS=`.
    fn beat(&mut self) {
        self.stats.beat();
        if notify::enabled() {
            let max_age = crate::health::default_max_tick_age(&self.config);
            let mut line = crate::health::summary(&self.stats, max_age);
            if let Some(reason) = &self.reload_failed {
                line = format!("reload failed, running the previous config: {reason}; {line}");
            }
            // Sent when it changes, not every second.
            if self.status_line != line {
                notify::status(&line);
                self.status_line = line;
            }
        }
    }

    /// pgqd's stats line: the figures since the previous line.
    fn stats_line(&mut self) {
        let totals = self.stats.totals();
        let line = totals.since(&self.last_stats);
        info!(
            target: crate::logging::STATS_TARGET,
            ticks = line.ticks,
            maint = line.maint,
            retry = line.retry,
            "{line}"
        );
        self.last_stats = totals;
    }

    fn defaults(&self) -> Defaults {
        Defaults {
            application_name: "pgqd".into(),
            connect_timeout: self.config.connect_timeout,
        }
    }

    /// Lists the databases and starts and stops tasks to match.
    async fn refresh(&mut self) {
        let names =
            match crate::discovery::databases(&self.config, &self.defaults(), &self.shutdown).await
            {
                Ok(names) => {
                    self.stats.set_discovered();
                    self.discovery_outage.end();
                    self.discovery_backoff.reset();
                    names
                }
                Err(e) if e.is_shutdown() => return,
                Err(e) => {
                    let label = db_label(&self.config.initial_database);
                    let _span = info_span!("db", db = label).entered();
                    self.discovery_outage.begin(
                        Job::Discovery,
                        &e,
                        "cannot list the databases",
                        "",
                    );
                    let delay = self.discovery_backoff.next_delay();
                    self.next_listing = Some(tokio::time::Instant::now() + delay);
                    return;
                }
            };
        if self.serve(names) {
            self.relisting.reset();
        }
        self.stats.set_tasks(self.tasks.len());
        self.relisting.set_max(self.config.check_period);
        let delay = self.relisting.next_delay();
        self.next_listing =
            (delay < self.config.check_period).then(|| tokio::time::Instant::now() + delay);
    }

    /// Starts and stops tasks to serve exactly `names`; `true` when the set changed.
    fn serve(&mut self, names: Vec<String>) -> bool {
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect();
        let mut changed = !gone.is_empty();
        for name in gone {
            self.unregister(&name);
        }
        for name in names {
            if !self.running.contains_key(&name) {
                self.start(name);
                changed = true;
            }
        }
        changed
    }

    /// Looks for other tickers on the server and hands what it saw to the tasks; a
    /// look that fails is logged (DEBUG: the databases' own errors say more) and the
    /// tasks keep what they knew.
    async fn look(&mut self) {
        let yielding = self.stats.any_yielding();
        self.next_look = tokio::time::Instant::now()
            + if yielding {
                YIELD_LOOK_PERIOD
            } else {
                LOOK_PERIOD
            };
        let ours = self.stats.ticker_backends();
        match crate::lookout::look(&self.config, &self.defaults(), &ours, &self.shutdown).await {
            Ok(sightings) => self.looks.send_modify(|look| {
                *look = Arc::new(Look {
                    number: look.number + 1,
                    sightings,
                })
            }),
            Err(e) if e.is_shutdown() => {}
            Err(e) => debug!(job = %Job::Watch, "cannot look for other tickers: {e}"),
        }
    }

    fn start(&mut self, name: String) {
        let label = db_label(&name);
        let target = match resolve(&self.config.base_connstr, &name, &self.defaults()) {
            Ok(target) => target,
            Err(e) => {
                error!(db = label, "cannot build connection settings: {e}");
                return;
            }
        };
        debug!(db = label, "starting database task");
        let stop = self.shutdown.child_token();
        let ctx = DbContext {
            stats: Arc::new(self.stats.register(&name)),
            relist: self.relist.clone(),
            looks: self.looks.subscribe(),
            name: name.clone(),
            target,
            settings: self.settings.subscribe(),
            connect_slots: self.connect_slots.clone(),
            clocks: self.clocks.clone(),
            engines: self.engines.clone(),
            shutdown: stop.clone(),
        };
        let span = info_span!("db", db = label);
        let task = self
            .tasks
            .spawn(DbTask::new(ctx).run().instrument(span))
            .id();
        self.running.insert(name, Running { task, stop });
    }

    /// pgqd's line for a database that is gone; its task is told to stop, and its
    /// entry leaves the stats when the task has ended.
    fn unregister(&mut self, name: &str) {
        info!("Unregister database: {}", db_label(name));
        self.stop(name);
    }

    fn stop(&mut self, name: &str) {
        if let Some(running) = self.running.remove(name) {
            running.stop.cancel();
            self.stopping.insert(running.task, name.to_string());
        }
    }

    /// Logs how a task ended; one that ended while still wanted (a panic) is forgotten
    /// so that the next listing starts it again.
    fn task_ended(&mut self, ended: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let id = match &ended {
            Ok((id, ())) => *id,
            Err(e) => e.id(),
        };
        if let Some(name) = self.stopping.remove(&id) {
            if let Err(e) = ended {
                error!(
                    db = db_label(&name),
                    "database task failed while stopping: {e}"
                );
            }
            return;
        }
        let name = self
            .running
            .iter()
            .find(|(_, r)| r.task == id)
            .map(|(n, _)| n.clone());
        match (ended, name) {
            (Ok(_), None) => {}
            (Ok(_), Some(name)) => {
                warn!(
                    db = db_label(&name),
                    "database task ended by itself; it is restarted at the next check"
                );
                self.running.remove(&name);
            }
            (Err(e), name) => {
                let label = name.as_deref().map(db_label).unwrap_or_default();
                error!(
                    db = label,
                    "database task failed: {e}; it is restarted at the next check"
                );
                if let Some(name) = name {
                    self.running.remove(&name);
                }
            }
        }
    }

    /// Applies a reloaded config: new settings reach every task through the watch
    /// channel; a changed connection string restarts the tasks; the database set is
    /// re-evaluated at once.
    async fn apply(&mut self, control: Control) {
        let config = match control {
            Control::Reload(config) => config,
            Control::ReloadFailed(reason) => {
                self.reload_failed = Some(reason);
                self.beat();
                return;
            }
        };
        self.reload_failed = None;
        let reconnect = config.base_connstr != self.config.base_connstr
            || config.connect_timeout != self.config.connect_timeout;
        if config.http_listen != self.config.http_listen {
            warn!(
                "http_listen changed from \"{}\" to \"{}\": the listener stays as it is until pgqd is restarted",
                self.config.http_listen, config.http_listen
            );
        }
        self.config = Arc::new(*config);
        self.settings.send_replace(self.config.clone());
        if reconnect {
            info!("base_connstr changed: reconnecting every database");
            let names: Vec<String> = self.running.keys().cloned().collect();
            for name in names {
                self.stop(&name);
            }
        }
        self.refresh().await;
        notify::ready();
    }

    /// Stops every task (each cancels its in-flight query server-side) and waits for
    /// them, naming the ones that miss the deadline.
    async fn stop_all(&mut self) {
        for running in self.running.values() {
            running.stop.cancel();
        }
        let deadline = tokio::time::sleep(STOP_DEADLINE);
        tokio::pin!(deadline);
        while !self.tasks.is_empty() {
            tokio::select! {
                Some(ended) = self.tasks.join_next_with_id() => {
                    let id = ended.map_or_else(|e| e.id(), |(id, ())| id);
                    self.running.retain(|_, r| r.task != id);
                    self.stopping.remove(&id);
                }
                _ = &mut deadline => {
                    let late: Vec<String> = self
                        .running
                        .keys()
                        .chain(self.stopping.values())
                        .map(|n| db_label(n))
                        .collect();
                    warn!("database tasks did not stop within {STOP_DEADLINE:?}: {}", late.join(", "));
                    self.tasks.abort_all();
                    break;
                }
            }
        }
    }
}
