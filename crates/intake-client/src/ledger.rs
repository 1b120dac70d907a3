//! What became of the queued events (delivered, deduplicated among those, failed), and the
//! flushes waiting for everything queued before them.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Acknowledged by the server: stored now, or found stored (`deduplicated`).
    Delivered { deduplicated: bool },
    /// Rejected, refused, or given up on.
    Failed,
}

/// What [`crate::Client::flush`] and [`crate::Client::close`] return: of the events queued
/// before the call (since the client was built), how many were delivered, how many failed and
/// how many were still pending when it returned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushCounts {
    /// Acknowledged by the server (deduplicated ones included).
    pub delivered: u64,
    /// Rejected, refused, or given up on (each reported to `on_error`).
    pub failed: u64,
    /// Neither yet.
    pub pending: u64,
}

pub(crate) struct Ledger {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    delivered: u64,
    deduplicated: u64,
    failed: u64,
    clock_skew_ms: Option<i64>,
    waiters: Vec<Waiter>,
    next_waiter: u64,
}

/// A flush waiting for every event numbered below `below`.
struct Waiter {
    id: u64,
    below: u64,
    delivered: u64,
    failed: u64,
    done: Option<oneshot::Sender<()>>,
}

impl Waiter {
    fn counts(&self) -> FlushCounts {
        FlushCounts {
            delivered: self.delivered,
            failed: self.failed,
            pending: self.below.saturating_sub(self.delivered + self.failed),
        }
    }

    fn wake_when_done(&mut self) {
        if self.counts().pending == 0 {
            if let Some(done) = self.done.take() {
                let _ = done.send(());
            }
        }
    }
}

/// The totals so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) delivered: u64,
    pub(crate) deduplicated: u64,
    pub(crate) failed: u64,
    pub(crate) clock_skew_ms: Option<i64>,
}

impl Ledger {
    pub(crate) fn new() -> Self {
        Self { state: Mutex::new(State::default()) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the events numbered below `below`: the receiver resolves once each is
    /// delivered or failed. Called while no event can be queued or settled out of turn (see
    /// `Queue::flush_mark`), so every event settled so far is one of them.
    pub(crate) fn register(&self, below: u64) -> (u64, oneshot::Receiver<()>) {
        let (done, finished) = oneshot::channel();
        let mut state = self.state();
        let id = state.next_waiter;
        state.next_waiter += 1;
        let mut waiter = Waiter {
            id,
            below,
            delivered: state.delivered,
            failed: state.failed,
            done: Some(done),
        };
        waiter.wake_when_done();
        state.waiters.push(waiter);
        (id, finished)
    }

    /// Stops waiting; the counts of the events it waited for, as they are now.
    pub(crate) fn unregister(&self, id: u64) -> FlushCounts {
        let mut state = self.state();
        match state.waiters.iter().position(|w| w.id == id) {
            Some(at) => state.waiters.swap_remove(at).counts(),
            None => FlushCounts::default(),
        }
    }

    /// Records what became of events (by number), and the clock skew their answer reported.
    pub(crate) fn settle(&self, outcomes: &[(u64, Outcome)], clock_skew_ms: Option<i64>) {
        let mut state = self.state();
        if clock_skew_ms.is_some() {
            state.clock_skew_ms = clock_skew_ms;
        }
        for &(seq, outcome) in outcomes {
            match outcome {
                Outcome::Delivered { deduplicated } => {
                    state.delivered += 1;
                    state.deduplicated += u64::from(deduplicated);
                }
                Outcome::Failed => state.failed += 1,
            }
            for waiter in state.waiters.iter_mut().filter(|w| seq < w.below) {
                match outcome {
                    Outcome::Delivered { .. } => waiter.delivered += 1,
                    Outcome::Failed => waiter.failed += 1,
                }
            }
        }
        for waiter in &mut state.waiters {
            waiter.wake_when_done();
        }
    }

    pub(crate) fn totals(&self) -> Totals {
        let state = self.state();
        Totals {
            delivered: state.delivered,
            deduplicated: state.deduplicated,
            failed: state.failed,
            clock_skew_ms: state.clock_skew_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Outcome = Outcome::Delivered { deduplicated: false };

    #[test]
    fn a_flush_counts_only_the_events_queued_before_it() {
        let ledger = Ledger::new();
        ledger.settle(&[(0, OK)], None);
        let (id, mut finished) = ledger.register(3);
        ledger.settle(&[(1, Outcome::Failed), (3, OK)], None);
        assert!(finished.try_recv().is_err(), "event 2 is still pending");
        assert_eq!(ledger.unregister(id), FlushCounts { delivered: 1, failed: 1, pending: 1 });

        let (id, mut finished) = ledger.register(4);
        ledger.settle(&[(2, Outcome::Delivered { deduplicated: true })], Some(-40));
        assert!(finished.try_recv().is_ok(), "every event below 4 is settled");
        assert_eq!(ledger.unregister(id), FlushCounts { delivered: 3, failed: 1, pending: 0 });
        let totals = ledger.totals();
        assert_eq!((totals.delivered, totals.deduplicated, totals.failed), (3, 1, 1));
        assert_eq!(totals.clock_skew_ms, Some(-40));
    }

    #[test]
    fn a_flush_of_nothing_is_done_at_once() {
        let ledger = Ledger::new();
        let (id, mut finished) = ledger.register(0);
        assert!(finished.try_recv().is_ok());
        assert_eq!(ledger.unregister(id), FlushCounts::default());
    }
}
