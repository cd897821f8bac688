//! How many requests the service holds: `workers` filtering at once and `queue` more waiting,
//! whether for their bodies or for a worker. Anything beyond is refused at once, never queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(super) struct Admission {
    capacity: usize,
    workers: usize,
    admitted: Arc<AtomicUsize>,
    workers_free: Arc<Semaphore>,
}

/// A request's place in the service, from admission until its work ends (moved into the
/// blocking task, so that a client that hangs up does not free a place still in use).
pub(super) struct Ticket {
    admitted: Arc<AtomicUsize>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    pub(super) fn new(workers: usize, queue: usize) -> Self {
        Self {
            capacity: workers + queue,
            workers,
            admitted: Arc::new(AtomicUsize::new(0)),
            workers_free: Arc::new(Semaphore::new(workers)),
        }
    }

    /// A place for one more request, or `None` when every worker is taken and the queue full.
    pub(super) fn admit(&self) -> Option<Ticket> {
        let before = self.admitted.fetch_add(1, Ordering::SeqCst);
        let ticket = Ticket {
            admitted: self.admitted.clone(),
        };
        (before < self.capacity).then_some(ticket)
    }

    /// Waits for a worker.
    pub(super) async fn worker(&self) -> OwnedSemaphorePermit {
        self.workers_free
            .clone()
            .acquire_owned()
            .await
            .expect("the workers' semaphore is never closed")
    }

    /// Requests filtering now.
    pub(super) fn in_flight(&self) -> usize {
        self.workers - self.workers_free.available_permits()
    }

    /// Requests admitted and waiting: for their bodies or for a worker.
    pub(super) fn waiting(&self) -> usize {
        self.admitted
            .load(Ordering::SeqCst)
            .saturating_sub(self.in_flight())
    }
}
