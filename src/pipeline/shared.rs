//! The one engine that many threads share (a batch's workers, a service's requests), and its
//! re-creation when the GPU device is lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::auto::Workload;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// Opens an engine for a workload: the first time, and again after a device loss (then for the
/// workload it was first opened for).
type Opener = Box<dyn Fn(&Workload) -> Result<Engine> + Send + Sync>;

/// How long [`SharedEngine::run_waiting`] (and a batch's images) wait for a lost engine to be
/// re-created before giving up: a minute.
pub(crate) const DEFAULT_PATIENCE: Duration = Duration::from_secs(60);

/// One [`Engine`] shared by many threads, used by one at a time: opened up front
/// ([`open`](Self::open)) or by the first image that needs it ([`deferred`](Self::deferred)),
/// and re-opened in the background, the same way, when its GPU device is lost or it panics.
///
/// ```no_run
/// use gpuconv::pipeline::SharedEngine;
/// use gpuconv::{BackendChoice, Engine, Kernel, Operation, Workload};
///
/// # fn main() -> gpuconv::Result<()> {
/// let edge = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
/// let shared = SharedEngine::deferred(|workload| Engine::for_workload(BackendChoice::Auto, workload));
/// let image = image::GrayImage::new(640, 480);
/// let workload = Workload::new(&edge, 640 * 480, Some(1));
/// let output = shared.run_waiting(&workload, |engine| engine.run(&image, &edge))?;
/// # Ok(()) }
/// ```
pub struct SharedEngine {
    /// `None` before the first opening and while a lost engine is being re-created.
    current: Mutex<Option<Engine>>,
    open: Opener,
    /// What the engine was first opened for, to open it again the same way.
    workload: Mutex<Option<Workload>>,
    lost: AtomicBool,
    /// Which engine is current: a lost-device callback from an engine already replaced (wgpu
    /// also calls it when a device is dropped) is ignored.
    generation: AtomicU64,
    description: Mutex<Option<String>>,
    is_gpu: AtomicBool,
    /// A GPU kept beside the CPU, each image sent to one or the other (`Engine::routed`).
    is_routed: AtomicBool,
    /// The current engine's device, polled by the watcher thread.
    device: Mutex<Option<wgpu::Device>>,
    watching: AtomicBool,
}

impl std::fmt::Debug for SharedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedEngine")
            .field("description", &self.description())
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

/// Why a [`SharedEngine`] did not take the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// Lost and being re-created: worth trying again shortly.
    Lost,
    /// It panicked on this work (a bug); it is being re-created, but the same input may well
    /// panic again.
    Panicked,
}

impl Unavailable {
    /// As a library error: [`Error::EngineLost`] or [`Error::EnginePanicked`], both run-wide
    /// (the engine, not the image, failed).
    pub fn into_error(self) -> Error {
        match self {
            Unavailable::Lost => Error::EngineLost,
            Unavailable::Panicked => Error::EnginePanicked,
        }
    }
}

impl SharedEngine {
    /// Opens an engine for `workload` now with `open`, which opens the next one too, after a
    /// lost device: for a service, ready before its first request.
    pub fn open(
        workload: Workload,
        open: impl Fn(&Workload) -> Result<Engine> + Send + Sync + 'static,
    ) -> Result<Arc<Self>> {
        let shared = Self::deferred(open);
        let engine = open_caught(&shared.open, &workload)?;
        *lock(&shared.workload) = Some(workload);
        shared.install(engine, &mut shared.lock())?;
        Ok(shared)
    }

    /// An engine `open` opens when the first image needs it, for that image's workload: for a
    /// batch, so that a bad first input is reported before any notice the opening prints, and
    /// so that `auto` weighs the job by a real input.
    pub fn deferred(
        open: impl Fn(&Workload) -> Result<Engine> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            current: Mutex::new(None),
            open: Box::new(open),
            workload: Mutex::new(None),
            lost: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            description: Mutex::new(None),
            is_gpu: AtomicBool::new(false),
            is_routed: AtomicBool::new(false),
            device: Mutex::new(None),
            watching: AtomicBool::new(false),
        })
    }

    /// The current engine as [`Engine::describe`] says it; `None` before it is first opened.
    pub fn description(&self) -> Option<String> {
        lock(&self.description).clone()
    }

    /// `"gpu"`, `"cpu"`, or `"gpu+cpu"` for a GPU kept beside the CPU, each image sent to one or
    /// the other.
    pub fn backend(&self) -> &'static str {
        if self.is_routed.load(Ordering::SeqCst) {
            "gpu+cpu"
        } else if self.is_gpu.load(Ordering::SeqCst) {
            "gpu"
        } else {
            "cpu"
        }
    }

    /// Whether the engine was lost and is being re-created.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Runs `work` on the engine, one caller at a time, opening it first for `workload` if no
    /// image has yet (an opening's error is `work`'s). Does not wait for a lost engine: says
    /// [`Unavailable::Lost`] at once. An engine that panics is re-created rather than trusted
    /// again.
    pub fn run<T>(
        self: &Arc<Self>,
        workload: &Workload,
        work: impl FnOnce(&mut Engine) -> Result<T>,
    ) -> std::result::Result<Result<T>, Unavailable> {
        // Checked before waiting for the lock, which a re-creation holds for its whole length.
        if self.is_lost() {
            return Err(Unavailable::Lost);
        }
        let mut current = self.lock();
        if self.is_lost() {
            return Err(Unavailable::Lost);
        }
        if current.is_none() {
            let opened = open_caught(&self.open, workload)
                .and_then(|engine| self.install(engine, &mut current));
            if let Err(error) = opened {
                return Ok(Err(error));
            }
            lock(&self.workload).get_or_insert(*workload);
        }
        let engine = current.as_mut().expect("opened above");
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(engine))) {
            Ok(result) => Ok(result),
            Err(_) => {
                // A bug, and the engine may be left half-way: it is not trusted again, not
                // even by the caller waiting for this lock.
                self.lose("it panicked while filtering".to_owned());
                drop(current);
                Err(Unavailable::Panicked)
            }
        }
    }

    /// [`run`](Self::run), waiting up to `patience` for a lost engine to be re-created, and
    /// doing `work` again on the new engine when it failed because the device was lost under
    /// it. A panic, or an engine still lost after `patience`, is a run-wide error
    /// ([`Unavailable::into_error`]).
    pub fn run_patiently<T>(
        self: &Arc<Self>,
        workload: &Workload,
        patience: Duration,
        mut work: impl FnMut(&mut Engine) -> Result<T>,
    ) -> Result<T> {
        let started = Instant::now();
        loop {
            let waited = started.elapsed() >= patience;
            // A new engine since, or one lost now, means the device went under the work (the
            // re-creation may even be over by the time the failure is looked at).
            let generation = self.generation.load(Ordering::SeqCst);
            match self.run(workload, &mut work) {
                // Failed run-wide because the device went: the image is not at fault.
                Ok(Err(error))
                    if error.kind() == crate::ErrorKind::RunWide
                        && !waited
                        && (self.device_went()
                            || self.generation.load(Ordering::SeqCst) != generation) => {}
                Ok(result) => return result,
                Err(Unavailable::Lost) if !waited => {}
                Err(unavailable) => return Err(unavailable.into_error()),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the engine's device is lost, after a run-wide failure: wgpu says so only from
    /// inside a poll, and may take a moment after the failure it caused, so the device is
    /// polled for up to half a second.
    fn device_went(&self) -> bool {
        let Some(device) = lock(&self.device).clone() else {
            return self.is_lost();
        };
        for _ in 0..10 {
            let _ = device.poll(wgpu::PollType::Poll);
            if self.is_lost() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// [`run_patiently`](Self::run_patiently) with a minute's patience: what a batch waits for a
    /// lost GPU before it gives up.
    pub fn run_waiting<T>(
        self: &Arc<Self>,
        workload: &Workload,
        work: impl FnMut(&mut Engine) -> Result<T>,
    ) -> Result<T> {
        self.run_patiently(workload, DEFAULT_PATIENCE, work)
    }

    /// Calls `look` with the current engine, if one is open (not lost, not being re-created):
    /// to save its pipeline cache at the end of a run, say.
    pub fn inspect<T>(&self, look: impl FnOnce(Option<&Engine>) -> T) -> T {
        let current = self.lock();
        look(current.as_ref().filter(|_| !self.is_lost()))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Engine>> {
        lock(&self.current)
    }

    /// Makes `engine` the current one and watches its device.
    fn install(self: &Arc<Self>, engine: Engine, current: &mut Option<Engine>) -> Result<()> {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        *lock(&self.device) = engine.gpu().map(|gpu| gpu.device().clone());
        if let Some(gpu) = engine.gpu() {
            let shared = Arc::downgrade(self);
            gpu.device()
                .set_device_lost_callback(move |reason, message| {
                    if let Some(shared) = shared.upgrade()
                        && shared.generation.load(Ordering::SeqCst) == generation
                    {
                        shared.lose(format!("{reason:?}: {message}"));
                    }
                });
            if !self.watching.swap(true, Ordering::SeqCst) {
                let watched = Arc::downgrade(self);
                std::thread::Builder::new()
                    .name("gpuconv-device-watch".to_owned())
                    .spawn(move || watch(watched))
                    .map_err(|e| Error::Gpu(format!("cannot start the device watcher: {e}")))?;
            }
        }
        *lock(&self.description) = Some(engine.describe());
        self.is_gpu.store(engine.is_gpu(), Ordering::SeqCst);
        self.is_routed.store(engine.is_routed(), Ordering::SeqCst);
        *current = Some(engine);
        Ok(())
    }

    /// Marks the engine lost and re-creates it on a thread of its own. wgpu may call this from
    /// inside its own calls, so it takes no lock.
    fn lose(self: &Arc<Self>, why: String) {
        if self.lost.swap(true, Ordering::SeqCst) {
            return;
        }
        crate::text::say!("gpuconv: the engine is lost ({why}); re-creating it");
        let shared = Arc::downgrade(self);
        if let Err(error) = std::thread::Builder::new()
            .name("gpuconv-recreate".to_owned())
            .spawn(move || recreate(shared))
        {
            // Nothing would re-create it: keep the engine rather than refuse work forever.
            crate::text::say!(
                "gpuconv: cannot start a thread to re-create the engine ({error}); keeping it"
            );
            self.lost.store(false, Ordering::SeqCst);
        }
    }
}

/// Calls `open`, a driver's panic becoming an error.
fn open_caught(open: &Opener, workload: &Workload) -> Result<Engine> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| open(workload)))
        .unwrap_or_else(|_| Err(Error::Gpu("opening the engine panicked".to_owned())))
}

/// Polls the device while nothing runs: wgpu reports a lost device (a driver reset, or
/// `destroy`) only from inside a poll or a submission, and a service's `/readyz` should say so
/// before the next request finds out.
fn watch(shared: Weak<SharedEngine>) {
    const PERIOD: Duration = Duration::from_millis(250);
    loop {
        std::thread::sleep(PERIOD);
        let Some(engine) = shared.upgrade() else {
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
/// up when the last user is gone.
fn recreate(shared: Weak<SharedEngine>) {
    let mut wait = Duration::from_millis(100);
    loop {
        let Some(engine) = shared.upgrade() else {
            return;
        };
        {
            let mut current = engine.lock();
            // The old engine goes first, its device with it: a device may not be openable twice.
            engine.generation.fetch_add(1, Ordering::SeqCst);
            lock(&engine.device).take();
            current.take();
            let workload = lock(&engine.workload).unwrap_or(Workload {
                pixels: 0,
                kernels: 1,
                outputs: 1,
                images: None,
                on_gpu: false,
            });
            let opened = open_caught(&engine.open, &workload);
            match opened.map(|opened| {
                // Cleared before the new device is watched, so that its own loss counts.
                engine.lost.store(false, Ordering::SeqCst);
                engine.install(opened, &mut current)
            }) {
                Ok(Ok(())) => {
                    let description = engine.description().unwrap_or_default();
                    crate::text::say!("gpuconv: engine re-created: {description}");
                    return;
                }
                Ok(Err(error)) | Err(error) => {
                    engine.lost.store(true, Ordering::SeqCst);
                    crate::text::say!(
                        "gpuconv: cannot re-create the engine ({error}); trying again in {:.1} s",
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
