//! The bounded queue between `send` and the background task: bounded in events and in bytes
//! (two semaphores whose permits are the room left), numbered in the order events were queued.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, TryAcquireError};

use crate::error::SendError;
use crate::event::Prepared;
use crate::options::OnFull;
use crate::wire::BATCH_BYTES;

/// An event in the queue.
pub(crate) struct Queued {
    /// Its place in the order events were queued, from 0.
    pub(crate) seq: u64,
    pub(crate) enqueued_at: Instant,
    pub(crate) event: Prepared,
}

/// When the background task should take a batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Nothing is queued.
    Empty,
    /// A batch is not full yet; its first event is due then.
    At(Instant),
    /// A batch is full, due, asked for by a flush, or the client is closing.
    Now,
}

pub(crate) struct Queue {
    state: Mutex<State>,
    /// Room left, in events.
    slots: Semaphore,
    /// Room left, in bytes of JSON.
    byte_slots: Semaphore,
    max_bytes: usize,
    /// Wakes the background task.
    wake: Notify,
    /// The batch size the background task waits for.
    batch: AtomicUsize,
}

struct State {
    items: VecDeque<Queued>,
    /// Bytes of JSON queued.
    bytes: usize,
    next_seq: u64,
    /// Events numbered below this are sent without waiting for `flush_interval`.
    flush_below: u64,
    closed: bool,
}

impl Queue {
    pub(crate) fn new(max_events: usize, max_bytes: usize, batch: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                next_seq: 0,
                flush_below: 0,
                closed: false,
            }),
            slots: Semaphore::new(max_events),
            byte_slots: Semaphore::new(max_bytes),
            max_bytes,
            wake: Notify::new(),
            batch: AtomicUsize::new(batch),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; should it, the state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an event, waiting for room as `policy` says.
    pub(crate) async fn push(&self, event: Prepared, policy: OnFull) -> Result<(), SendError> {
        let bytes = event.json.len();
        if bytes > self.max_bytes {
            return Err(SendError::TooLarge { bytes, limit: self.max_bytes });
        }
        // `max_bytes` fits in a u32 (the builder checks), so does `bytes`.
        let byte_permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        match policy {
            OnFull::Drop => {
                let full = |e: TryAcquireError| match e {
                    TryAcquireError::Closed => SendError::Closed,
                    TryAcquireError::NoPermits => SendError::QueueFull,
                };
                let slot = self.slots.try_acquire().map_err(full)?;
                let room = self.byte_slots.try_acquire_many(byte_permits).map_err(full)?;
                slot.forget();
                room.forget();
            }
            OnFull::Block { timeout } => {
                let room = tokio::time::timeout(timeout, async {
                    let slot = self.slots.acquire().await?;
                    let room = self.byte_slots.acquire_many(byte_permits).await?;
                    Ok::<_, tokio::sync::AcquireError>((slot, room))
                })
                .await;
                match room {
                    Err(_elapsed) => return Err(SendError::Timeout(timeout)),
                    Ok(Err(_closed)) => return Err(SendError::Closed),
                    Ok(Ok((slot, room))) => {
                        slot.forget();
                        room.forget();
                    }
                }
            }
        }
        let mut state = self.state();
        if state.closed {
            return Err(SendError::Closed);
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.bytes += bytes;
        state.items.push_back(Queued { seq, enqueued_at: Instant::now(), event });
        let len = state.items.len();
        let wake =
            len == 1 || len >= self.batch.load(Ordering::Relaxed) || state.bytes >= BATCH_BYTES;
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Whether a batch of up to `batch` events should be taken now.
    pub(crate) fn readiness(&self, batch: usize, interval: Duration, now: Instant) -> Readiness {
        let state = self.state();
        let Some(front) = state.items.front() else {
            return Readiness::Empty;
        };
        if state.items.len() >= batch
            || state.bytes >= BATCH_BYTES
            || front.seq < state.flush_below
            || state.closed
        {
            return Readiness::Now;
        }
        let due = front.enqueued_at + interval;
        if due <= now {
            Readiness::Now
        } else {
            Readiness::At(due)
        }
    }

    /// Takes up to `batch` events (and at most [`BATCH_BYTES`] of JSON, but at least one
    /// event) from the front, making room for as many.
    pub(crate) fn take(&self, batch: usize) -> Vec<Queued> {
        let mut state = self.state();
        let mut taken = Vec::with_capacity(batch.min(state.items.len()));
        let mut bytes = 0;
        while taken.len() < batch {
            let Some(size) = state.items.front().map(|q| q.event.json.len()) else {
                break;
            };
            if !taken.is_empty() && bytes + size > BATCH_BYTES {
                break;
            }
            bytes += size;
            taken.extend(state.items.pop_front());
        }
        state.bytes -= bytes;
        drop(state);
        self.slots.add_permits(taken.len());
        self.byte_slots.add_permits(bytes);
        taken
    }

    /// Asks for everything queued so far to be sent at once, and runs `mark` with the number of
    /// events queued so far while no event can be queued (so that what `mark` records about
    /// "everything before" stays exact).
    pub(crate) fn flush_mark<R>(&self, mark: impl FnOnce(u64) -> R) -> R {
        let mut state = self.state();
        let queued = state.next_seq;
        state.flush_below = state.flush_below.max(queued);
        let marked = mark(queued);
        drop(state);
        self.wake.notify_one();
        marked
    }

    /// Refuses further events; those queued stay to be sent.
    pub(crate) fn close(&self) {
        self.state().closed = true;
        self.slots.close();
        self.byte_slots.close();
        self.wake.notify_one();
    }

    /// Events queued since the start.
    pub(crate) fn enqueued(&self) -> u64 {
        self.state().next_seq
    }

    /// Events waiting now.
    pub(crate) fn len(&self) -> usize {
        self.state().items.len()
    }

    /// Resolves when an event was queued into an empty queue, a batch filled, a flush was asked
    /// for or the queue closed (or at once, when that happened since the last call).
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// The batch size to wake the background task for.
    pub(crate) fn set_batch(&self, batch: usize) {
        self.batch.store(batch, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(size: usize) -> Prepared {
        Prepared {
            key: "k".into(),
            event_type: "t".into(),
            occurred_at: chrono::Utc::now().fixed_offset(),
            json: "x".repeat(size),
        }
    }

    const DROP: OnFull = OnFull::Drop;

    #[tokio::test]
    async fn a_full_queue_drops_under_the_drop_policy_and_times_out_under_block() {
        let queue = Queue::new(2, 1024, 100);
        queue.push(event(10), DROP).await.expect("room");
        queue.push(event(10), DROP).await.expect("room");
        assert!(matches!(queue.push(event(10), DROP).await, Err(SendError::QueueFull)));
        let block = OnFull::Block { timeout: Duration::from_millis(50) };
        assert!(matches!(queue.push(event(10), block).await, Err(SendError::Timeout(_))));
        assert_eq!(queue.take(1).len(), 1);
        queue.push(event(10), block).await.expect("room again once one was taken");
    }

    #[tokio::test]
    async fn the_byte_bound_fills_the_queue_too() {
        let queue = Queue::new(100, 25, 100);
        queue.push(event(20), DROP).await.expect("room");
        assert!(matches!(queue.push(event(10), DROP).await, Err(SendError::QueueFull)));
        assert!(matches!(
            queue.push(event(30), DROP).await,
            Err(SendError::TooLarge { bytes: 30, limit: 25 })
        ));
    }

    #[tokio::test]
    async fn a_partial_batch_is_due_after_the_interval_or_at_once_when_flushed() {
        let queue = Queue::new(100, 1024, 3);
        let interval = Duration::from_secs(1);
        assert_eq!(queue.readiness(3, interval, Instant::now()), Readiness::Empty);
        queue.push(event(1), DROP).await.expect("room");
        let now = Instant::now();
        assert!(matches!(queue.readiness(3, interval, now), Readiness::At(_)));
        assert_eq!(queue.readiness(3, interval, now + interval), Readiness::Now);
        assert_eq!(queue.flush_mark(|queued| queued), 1);
        assert_eq!(queue.readiness(3, interval, now), Readiness::Now);
        queue.take(3);
        queue.push(event(1), DROP).await.expect("room");
        assert!(matches!(queue.readiness(3, interval, now), Readiness::At(_)), "after the flush");
        queue.push(event(1), DROP).await.expect("room");
        queue.push(event(1), DROP).await.expect("room");
        assert_eq!(queue.readiness(3, interval, now), Readiness::Now, "a full batch");
    }

    #[tokio::test]
    async fn a_closed_queue_refuses_events_and_wakes_blocked_senders() {
        let queue = std::sync::Arc::new(Queue::new(1, 1024, 100));
        queue.push(event(1), DROP).await.expect("room");
        let blocked = {
            let queue = queue.clone();
            tokio::spawn(async move {
                let block = OnFull::Block { timeout: Duration::from_secs(10) };
                queue.push(event(1), block).await
            })
        };
        tokio::task::yield_now().await;
        queue.close();
        assert!(matches!(blocked.await.expect("joined"), Err(SendError::Closed)));
        assert!(matches!(queue.push(event(1), DROP).await, Err(SendError::Closed)));
        assert_eq!(queue.readiness(100, Duration::from_secs(1), Instant::now()), Readiness::Now);
    }
}
