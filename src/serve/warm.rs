//! The one engine the service keeps open, and its re-creation when the GPU device is lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use crate::{Engine, Result};

/// Opens an engine: at start and after a device loss.
pub(super) type Opener = Box<dyn Fn() -> Result<Engine> + Send + Sync>;

pub(super) struct WarmEngine {
    /// `None` while a lost engine is being re-created.
    current: Mutex<Option<Engine>>,
    open: Opener,
    lost: AtomicBool,
    /// Which engine is current: a lost-device callback from an engine already replaced (wgpu
    /// also calls it when a device is dropped) is ignored.
    generation: AtomicU64,
    description: Mutex<String>,
    is_gpu: AtomicBool,
    /// A GPU kept beside the CPU, each request sent to one or the other (`Engine::routed`).
    is_routed: AtomicBool,
    /// The current engine's device, polled by the watcher thread.
    device: Mutex<Option<wgpu::Device>>,
}

/// Why the engine did not take the work.
#[derive(Debug)]
pub(super) enum Unavailable {
    /// Lost and being re-created: worth trying again shortly.
    Lost,
    /// It panicked on this work (a bug); it is being re-created, but the same input may well
    /// panic again.
    Panicked,
}

impl WarmEngine {
    pub(super) fn open(open: Opener) -> Result<Arc<Self>> {
        let engine = open()?;
        let warm = Arc::new(Self {
            description: Mutex::new(engine.describe()),
            is_gpu: AtomicBool::new(engine.is_gpu()),
            is_routed: AtomicBool::new(engine.is_routed()),
            current: Mutex::new(None),
            open,
            lost: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            device: Mutex::new(None),
        });
        warm.install(engine, &mut warm.lock());
        // Idle for a CPU engine, which has no device, but ready for a GPU one opened later.
        let watched = Arc::downgrade(&warm);
        std::thread::Builder::new()
            .name("gpuconv-device-watch".to_owned())
            .spawn(move || watch(watched))
            .map_err(|e| crate::Error::Gpu(format!("cannot start the device watcher: {e}")))?;
        Ok(warm)
    }

    pub(super) fn description(&self) -> String {
        lock(&self.description).clone()
    }

    /// `"gpu"`, `"cpu"`, or `"gpu+cpu"` for a GPU kept beside the CPU, each request sent to one
    /// or the other.
    pub(super) fn backend(&self) -> &'static str {
        if self.is_routed.load(Ordering::SeqCst) {
            "gpu+cpu"
        } else if self.is_gpu.load(Ordering::SeqCst) {
            "gpu"
        } else {
            "cpu"
        }
    }

    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Runs `work` on the engine, one caller at a time. An engine that panics is re-created
    /// rather than trusted again.
    pub(super) fn with<T>(
        self: &Arc<Self>,
        work: impl FnOnce(&mut Engine) -> Result<T>,
    ) -> std::result::Result<Result<T>, Unavailable> {
        // Checked before waiting for the lock, which a re-creation holds for its whole length.
        if self.is_lost() {
            return Err(Unavailable::Lost);
        }
        let mut current = self.lock();
        let engine = match current.as_mut() {
            Some(engine) if !self.is_lost() => engine,
            _ => return Err(Unavailable::Lost),
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(engine))) {
            Ok(result) => Ok(result),
            Err(_) => {
                // A bug, and the engine may be left half-way: it is not trusted again, not
                // even by the worker waiting for this lock.
                self.lose("it panicked while filtering".to_owned());
                drop(current);
                Err(Unavailable::Panicked)
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Engine>> {
        lock(&self.current)
    }

    /// Makes `engine` the current one and watches its device.
    fn install(self: &Arc<Self>, engine: Engine, current: &mut Option<Engine>) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        *lock(&self.device) = engine.gpu().map(|gpu| gpu.device().clone());
        if let Some(gpu) = engine.gpu() {
            let warm = Arc::downgrade(self);
            gpu.device()
                .set_device_lost_callback(move |reason, message| {
                    if let Some(warm) = warm.upgrade()
                        && warm.generation.load(Ordering::SeqCst) == generation
                    {
                        warm.lose(format!("{reason:?}: {message}"));
                    }
                });
        }
        *lock(&self.description) = engine.describe();
        self.is_gpu.store(engine.is_gpu(), Ordering::SeqCst);
        self.is_routed.store(engine.is_routed(), Ordering::SeqCst);
        *current = Some(engine);
    }

    /// Marks the engine lost and re-creates it on a thread of its own. wgpu may call this from
    /// inside its own calls, so it takes no lock.
    fn lose(self: &Arc<Self>, why: String) {
        if self.lost.swap(true, Ordering::SeqCst) {
            return;
        }
        eprintln!("gpuconv serve: the engine is lost ({why}); re-creating it");
        let warm = Arc::downgrade(self);
        if let Err(error) = std::thread::Builder::new()
            .name("gpuconv-recreate".to_owned())
            .spawn(move || recreate(warm))
        {
            // Nothing would re-create it: keep the engine rather than refuse work forever.
            eprintln!(
                "gpuconv serve: cannot start a thread to re-create the engine ({error}); keeping it"
            );
            self.lost.store(false, Ordering::SeqCst);
        }
    }
}

/// Polls the device while the service is idle: wgpu reports a lost device (a driver reset, or
/// `destroy`) only from inside a poll or a submission, and `/readyz` should say so before the
/// next request finds out.
fn watch(warm: Weak<WarmEngine>) {
    const PERIOD: Duration = Duration::from_millis(250);
    loop {
        std::thread::sleep(PERIOD);
        let Some(engine) = warm.upgrade() else {
            return;
        };
        let device = lock(&engine.device).clone();
        drop(engine);
        if let Some(device) = device {
            let _ = device.poll(wgpu::PollType::Poll);
        }
    }
}

/// Re-opens the engine until it opens, waiting longer after each failure (up to 30 s); gives
/// up when the service is gone.
fn recreate(warm: Weak<WarmEngine>) {
    let mut wait = Duration::from_millis(100);
    loop {
        let Some(engine) = warm.upgrade() else {
            return;
        };
        {
            let mut current = engine.lock();
            // The old engine goes first, its device with it: a device may not be openable twice.
            engine.generation.fetch_add(1, Ordering::SeqCst);
            lock(&engine.device).take();
            current.take();
            // Driver code may panic; that is one more failed attempt, not the end of trying.
            let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (engine.open)()))
                .unwrap_or_else(|_| {
                    Err(crate::Error::Gpu("opening the engine panicked".to_owned()))
                });
            match opened {
                Ok(opened) => {
                    // Cleared before the new device is watched, so that its own loss counts.
                    engine.lost.store(false, Ordering::SeqCst);
                    engine.install(opened, &mut current);
                    eprintln!("gpuconv serve: engine re-created: {}", engine.description());
                    return;
                }
                Err(error) => {
                    eprintln!(
                        "gpuconv serve: cannot re-create the engine ({error}); trying again in {:.1} s",
                        wait.as_secs_f64()
                    );
                }
            }
        }
        drop(engine);
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
