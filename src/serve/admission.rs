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

/// The service's memory budget, `--max-memory`, in KiB: a worker's share while it decodes,
/// filters and encodes, then its answer's bytes until the answer is sent or its client gone.
/// So answers waiting for slow readers are inside the budget, and a request that finds no whole
/// share free (answers hold it) is refused at once rather than let memory grow.
pub(super) struct Memory {
    kib: Arc<Semaphore>,
    share_kib: u32,
    total_kib: usize,
}

/// Bytes in KiB, rounded up, as semaphore permits.
fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl Memory {
    /// `max_memory` shared by `workers`, each taking `max_memory / workers` while it works.
    pub(super) fn new(max_memory: u64, workers: usize) -> Self {
        let total_kib = (max_memory / 1024).min(u64::from(u32::MAX)) as usize;
        // Rounded down, so that every worker's share fits at once.
        let share_kib = (total_kib / workers.max(1)) as u32;
        Self {
            kib: Arc::new(Semaphore::new(total_kib)),
            share_kib,
            total_kib,
        }
    }

    /// A worker's share, waiting up to `patience` for answers being sent to give some back;
    /// `None` when they still hold too much.
    pub(super) async fn share(
        &self,
        patience: std::time::Duration,
    ) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(
            patience,
            self.kib.clone().acquire_many_owned(self.share_kib),
        )
        .await
        .ok()?
        .ok()
    }

    /// Bytes held now by workers and answers.
    pub(super) fn held_bytes(&self) -> u64 {
        (self.total_kib - self.kib.available_permits()) as u64 * 1024
    }
}

/// Keeps of a worker's `share` what an answer of `bytes` needs, until it is sent; the rest of
/// the share goes back at once. (An answer larger than the share, which the reading checks
/// make rare, keeps the whole share.)
pub(super) fn keep_for_answer(
    mut share: OwnedSemaphorePermit,
    bytes: usize,
) -> OwnedSemaphorePermit {
    match share.split(kib(bytes as u64) as usize) {
        Some(answer) => answer,
        None => share,
    }
}
