//! The ticker engine: one task per ticker spacing that makes the ticker calls of
//! every database whose task has nothing else to do for a while.
//!
//! A database task's turn costs more than its call: a wake by the clock, a poll down
//! the task's phases, the housekeeping checks, a second wake for the reply, and a new
//! wait for the clock. Measured with perf (100 databases at ticker_period 0.1), that
//! was more user time than the call's own, and the daemon's CPU per call about twice
//! what a client that only sends and reads needs (`bench/floor.c`). Most turns are
//! the call alone: nothing is due until the next retry check, maintenance round,
//! queue reading or connection_lifetime. For such a quiet stretch the task lends its
//! session's lane to the engine, which makes the call on every lent lane in one wake
//! per tick, reads the replies as they come, and counts each call as the task would.
//! The engine gives a lane back:
//!
//! - [`Back::Due`], with no call made, at the first tick where the stretch is over: its
//!   end has come, the settings or the look for other tickers changed, or the server
//!   closed the connection. The task takes the turn itself, at once.
//! - [`Back::Done`] with a reply that is not a plain success on the expected backend
//!   (an error, another backend): the task reads it as its own call's.
//! - [`Back::Busy`] with a call still running at the next tick: the task finishes it
//!   with ticker_timeout and the server-side cancel, as its own.
//!
//! A task that stops while its lane is lent leaves it here: the engine drops it at
//! the next tick. Over TLS a session has no lane, and its task ticks by itself.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, SystemTime};

use pgconninfo::{Lane, LaneError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::clock::{Clocks, Ticks};
use crate::config::Config;
use crate::jobs::ticker::{self, TickOutcome};
use crate::jobs::watch::Look;
use crate::pg::LentCall;
use crate::stats::DbStats;

/// A lane lent for a quiet stretch, with what the engine needs to tick on it.
pub struct Loan {
    pub lane: Lane,
    pub terms: Terms,
}

/// What the engine needs of a loan besides its lane, kept as is for the loan's time.
pub struct Terms {
    /// The end of the stretch: the task's next housekeeping or reconnect.
    pub until: Instant,
    /// The backend the session's ticker calls run on; a reply from another goes back.
    pub backend: i32,
    pub stats: Arc<DbStats>,
    /// The task's settings and looks, seen as of the loan: a change ends the stretch.
    pub settings: watch::Receiver<Arc<Config>>,
    pub looks: watch::Receiver<Arc<Look>>,
    pub back: oneshot::Sender<Back>,
}

/// A lane given back, and why.
pub enum Back {
    /// The stretch is over; no call was made at this tick.
    Due(Lane),
    /// A call ended with a reply the task reads itself.
    Done {
        lane: Lane,
        started: Instant,
        reply: Result<TickOutcome, LaneError>,
    },
    /// A call still running at the next tick; it owns the lane until it ends.
    Busy {
        call: LentCall<TickOutcome>,
        started: Instant,
    },
}

/// The engines of one supervisor, by ticker spacing. Cloned into every database task.
#[derive(Clone)]
pub struct Engines {
    clocks: Clocks,
    running: Arc<Mutex<HashMap<Duration, mpsc::UnboundedSender<Loan>>>>,
}

type Running<'a> = MutexGuard<'a, HashMap<Duration, mpsc::UnboundedSender<Loan>>>;

impl Engines {
    pub fn new(clocks: Clocks) -> Engines {
        Engines {
            clocks,
            running: Arc::default(),
        }
    }

    fn lock(&self) -> Running<'_> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lends `loan` to the engine of `spacing` (started if none runs): its first call
    /// is at that clock's next tick. Must be called within the runtime.
    pub fn lend(&self, spacing: Duration, loan: Loan) {
        let mut running = self.lock();
        let loan = match running.get(&spacing) {
            Some(engine) => match engine.send(loan) {
                Ok(()) => return,
                // The engine has ended (it removes itself first; a panic would not).
                Err(mpsc::error::SendError(loan)) => loan,
            },
            None => loan,
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        // Cannot fail: the receiver is alive.
        let _ = sender.send(loan);
        running.insert(spacing, sender);
        let engine = Engine {
            call,
            engines: self.clone(),
            spacing,
            loans: receiver,
            slots: Vec::new(),
            free: Vec::new(),
            ready: Arc::default(),
        };
        // Unconstrained: a tick's calls are one send and one read each on many
        // sockets in one poll, past tokio's budget of I/O per poll, which would make
        // the lanes beyond it report not-ready and wake themselves.
        tokio::spawn(tokio::task::unconstrained(engine.run()));
    }
}

/// One lent lane in the engine: between calls the lane itself, during one the call.
struct Slot<F> {
    lane: Option<Lane>,
    /// The call in flight, in place: one allocation per loan, not per call.
    call: Pin<Box<Option<F>>>,
    started: Instant,
    terms: Terms,
    /// Wakes the engine with this slot's index when its call can go on.
    waker: Waker,
}

/// `F` is [`call`]'s future, named by the function that makes it.
struct Engine<F> {
    call: fn(Lane) -> F,
    engines: Engines,
    spacing: Duration,
    loans: mpsc::UnboundedReceiver<Loan>,
    slots: Vec<Option<Slot<F>>>,
    /// Indices of empty slots.
    free: Vec<usize>,
    ready: Arc<Ready>,
}

impl<F> Engine<F>
where
    F: Future<Output = (Lane, Result<TickOutcome, LaneError>)> + Send + 'static,
{
    /// Ticks the lent lanes until none is left and none is on its way.
    async fn run(mut self) {
        let mut ticks = self.engines.clocks.every(self.spacing);
        // The immediate first tick: a lane is lent after its task's own call of this
        // tick, so the engine's first calls are at the next.
        ticks.tick().await;
        let mut next = Box::pin(next_tick(ticks));
        let ready = self.ready.clone();
        let mut woken = Vec::new();
        loop {
            tokio::select! {
                biased;
                () = ready.wait(&mut woken) => {
                    let now = Now::read();
                    for index in woken.drain(..) {
                        self.poll(index, now);
                    }
                }
                ticks = &mut next => {
                    self.tick();
                    if self.slots.len() == self.free.len() && self.retire() {
                        return;
                    }
                    next = Box::pin(next_tick(ticks));
                }
                Some(loan) = self.loans.recv() => self.admit(loan),
            }
        }
    }

    fn admit(&mut self, loan: Loan) {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let waker = Waker::from(Arc::new(SlotWaker {
            index,
            ready: self.ready.clone(),
        }));
        self.slots[index] = Some(Slot {
            lane: Some(loan.lane),
            call: Box::pin(None),
            started: Instant::now(),
            terms: loan.terms,
            waker,
        });
    }

    fn remove(&mut self, index: usize) -> Option<Slot<F>> {
        let slot = self.slots.get_mut(index)?.take()?;
        self.free.push(index);
        Some(slot)
    }

    /// A tick: each lane's call, or the lane back to its task.
    fn tick(&mut self) {
        let now = Now::read();
        for index in 0..self.slots.len() {
            let Some(slot) = self.slots[index].as_mut() else {
                continue;
            };
            if slot.call.is_some() {
                // Still running since the last tick: the task's to finish.
                if let Some(slot) = self.remove(index) {
                    let call = Box::pin(finish(slot.call));
                    let started = slot.started;
                    let _ = slot.terms.back.send(Back::Busy { call, started });
                }
                continue;
            }
            let Some(lane) = slot.lane.take() else {
                continue;
            };
            if slot.terms.back.is_closed() {
                // The task has stopped.
                self.remove(index);
                continue;
            }
            if now.at >= slot.terms.until
                || changed(&slot.terms.settings)
                || changed(&slot.terms.looks)
                || lane.is_orphaned()
            {
                if let Some(slot) = self.remove(index) {
                    let _ = slot.terms.back.send(Back::Due(lane));
                }
                continue;
            }
            slot.started = now.at;
            slot.call.as_mut().set(Some((self.call)(lane)));
            self.poll(index, now);
        }
    }

    /// Polls a slot's call; a plain success is counted and its lane kept, anything
    /// else goes back to the task.
    fn poll(&mut self, index: usize, now: Now) {
        let Some(slot) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let Some(call) = slot.call.as_mut().as_pin_mut() else {
            return;
        };
        let Poll::Ready((lane, reply)) = call.poll(&mut Context::from_waker(&slot.waker)) else {
            return;
        };
        slot.call.as_mut().set(None);
        match reply {
            Ok(TickOutcome::All {
                backend: Some(backend),
                ..
            }) if backend == slot.terms.backend => {
                let stats = &slot.terms.stats;
                stats
                    .ticker_seconds()
                    .observe((now.at - slot.started).as_secs_f64());
                stats.ticked_at(false, now.at.into_std(), now.wall);
                slot.lane = Some(lane);
            }
            reply => {
                if let Some(slot) = self.remove(index) {
                    let started = slot.started;
                    let _ = slot.terms.back.send(Back::Done {
                        lane,
                        started,
                        reply,
                    });
                }
            }
        }
    }

    /// Ends the engine when no loan is on its way; under the lock, so that a loan
    /// made meanwhile is either received here or starts a new engine.
    fn retire(&mut self) -> bool {
        let engines = self.engines.clone();
        let mut running = engines.lock();
        match self.loans.try_recv() {
            Ok(loan) => {
                drop(running);
                self.admit(loan);
                false
            }
            Err(_) => {
                running.remove(&self.spacing);
                true
            }
        }
    }
}

/// The time, read once for all the calls of a tick or the replies of a wake-up.
#[derive(Clone, Copy)]
struct Now {
    at: Instant,
    wall: SystemTime,
}

impl Now {
    fn read() -> Now {
        Now {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

async fn next_tick(mut ticks: Ticks) -> Ticks {
    ticks.tick().await;
    ticks
}

/// A call in flight, finished elsewhere (by the task, [`Back::Busy`]).
async fn finish<F: Future>(mut call: Pin<Box<Option<F>>>) -> F::Output {
    std::future::poll_fn(|cx| match call.as_mut().as_pin_mut() {
        Some(call) => call.poll(cx),
        // Not reached: a slot's call is handed over only while in flight.
        None => Poll::Pending,
    })
    .await
}

/// One ticker call on a lent lane.
async fn call(mut lane: Lane) -> (Lane, Result<TickOutcome, LaneError>) {
    let reply = lane
        .first_row(ticker::lane_query())
        .await
        .map(|row| ticker::read(|i| row?.get(i)));
    (lane, reply)
}

/// Whether the value behind `receiver` changed since the loan (or its sender is gone).
fn changed<T>(receiver: &watch::Receiver<T>) -> bool {
    receiver.has_changed().unwrap_or(true)
}

/// The slots whose calls can go on, and the engine's waker.
#[derive(Default)]
struct Ready(Mutex<ReadyInner>);

#[derive(Default)]
struct ReadyInner {
    slots: Vec<usize>,
    engine: Option<Waker>,
}

impl Ready {
    fn lock(&self) -> MutexGuard<'_, ReadyInner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until some slot was woken; swaps the woken indices into `into` (empty).
    fn wait<'a>(&'a self, into: &'a mut Vec<usize>) -> impl Future<Output = ()> + 'a {
        std::future::poll_fn(move |cx| {
            let mut inner = self.lock();
            if !inner.slots.is_empty() {
                std::mem::swap(&mut inner.slots, into);
                return Poll::Ready(());
            }
            if !inner
                .engine
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inner.engine = Some(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

struct SlotWaker {
    index: usize,
    ready: Arc<Ready>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let engine = {
            let mut inner = self.ready.lock();
            inner.slots.push(self.index);
            inner.engine.take()
        };
        if let Some(engine) = engine {
            engine.wake();
        }
    }
}
