//! Many inputs at once: a worker per core, each within its share of the memory budget, results
//! reported in input order, inputs too large for a share filtered afterwards, alone, with the
//! whole budget, and the batch stopped by a run-wide failure. What the command line's
//! `gpuconv filter` does with several inputs, for any app that filters a folder.
//!
//! [`filter_all`] filters sources into destinations with the [pipeline](super); [`run`] takes
//! any work as a closure, so that it knows nothing of files or formats: it only needs to know,
//! of a failure, its [`ErrorKind`] and whether more memory would have let it through
//! ([`BatchError`]).
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! use gpuconv::pipeline::batch::{self, Batch};
//! use gpuconv::pipeline::{Destination, Settings, SharedEngine, Source};
//! use gpuconv::{BackendChoice, Engine, Kernel, Operation};
//!
//! # fn main() -> gpuconv::Result<()> {
//! let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
//! // Opened by the first image, for the batch's workload; shared by every worker.
//! let engine = SharedEngine::deferred(|workload| Engine::for_workload(BackendChoice::Auto, workload));
//! let jobs: Vec<(Source, Destination)> = ["a.png", "b.png", "c.png"]
//!     .into_iter()
//!     .map(|name| {
//!         let outputs = batch::output_paths(Path::new("out"), &name[..1], &operation, "png");
//!         (Source::File(PathBuf::from(name)), Destination::Files(outputs))
//!     })
//!     .collect();
//! let plan = Batch::new(jobs.len(), gpuconv::io::default_memory_budget());
//! batch::filter_all(&engine, &plan, &jobs, &Settings::new(&operation), |source, outcome| {
//!     if let Err(error) = outcome {
//!         eprintln!("{}: {error}", source.name());
//!     }
//! })?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::PoisonError;

use crate::error::{Error, ErrorKind};

/// What a batch must know of a failed input.
pub trait BatchError {
    /// Whose fault it is: a [`ErrorKind::RunWide`] failure stops the batch.
    fn kind(&self) -> ErrorKind;
    /// Whether the input failed only for want of memory budget, so that it is tried again
    /// after the others, alone, with the whole budget.
    fn is_over_budget(&self) -> bool;
}

impl BatchError for Error {
    fn kind(&self) -> ErrorKind {
        Error::kind(self)
    }

    fn is_over_budget(&self) -> bool {
        Error::is_over_budget(self)
    }
}

/// How a batch spreads its inputs: how many at once, and the memory budget they share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Inputs filtered at once, each on a thread of its own: by default one per core, never
    /// more than there are inputs.
    pub workers: usize,
    /// The memory budget of the whole batch, in bytes: each worker takes an equal share.
    pub max_memory: u64,
}

impl Batch {
    /// A batch of `inputs` inputs within `max_memory` bytes, one worker per core (rayon's
    /// threads).
    pub fn new(inputs: usize, max_memory: u64) -> Self {
        Self {
            workers: rayon::current_num_threads().clamp(1, inputs.max(1)),
            max_memory,
        }
    }
}

/// What one input may take while it is filtered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// Bytes this input may take.
    pub max_memory: u64,
    /// Whether this input runs alone, after the others, with the whole budget.
    pub alone: bool,
}

impl Share {
    /// [`ReadLimits`](crate::io::ReadLimits) for this share, with the default pixel limit and
    /// `output_images` output images counted.
    pub fn read_limits(&self, output_images: u64) -> crate::io::ReadLimits {
        crate::io::ReadLimits {
            max_memory: self.max_memory,
            output_images,
            ..Default::default()
        }
    }
}

/// Runs `work` on every input, several at once as `plan` says, and hands each outcome to
/// `report` in input order (those deferred, last, in input order too). An input `alone` says
/// must run by itself (standard input, which can be read once, say), and one that fails
/// [over budget](BatchError::is_over_budget) within a worker's share, run after the others,
/// one at a time, with the whole budget. A [run-wide](ErrorKind::RunWide) failure stops the
/// batch: inputs not yet started are not, and the failure is returned instead of reported.
///
/// `inputs` is taken as it is consumed (a list read line by line, say), never whole: a worker
/// takes the next input when it is free, and at most [`AHEAD_PER_WORKER`] inputs per worker
/// (one more each, at worst) are taken beyond the oldest not yet reported, so memory stays
/// bounded however long the list and however slow one input.
pub fn run<J, T, E>(
    plan: &Batch,
    inputs: impl IntoIterator<Item = J, IntoIter: Send>,
    alone: impl Fn(&J) -> bool + Sync,
    work: impl Fn(&J, Share) -> Result<T, E> + Sync,
    mut report: impl FnMut(&J, Result<T, E>),
) -> Result<(), E>
where
    J: Send,
    T: Send,
    E: BatchError + Send,
{
    let inputs = inputs.into_iter();
    // Never more workers than inputs, when the inputs say how many they are.
    let known = inputs.size_hint().1.unwrap_or(usize::MAX);
    let workers = plan.workers.clamp(1, known.max(1));
    let share = Share {
        max_memory: plan.max_memory / workers as u64,
        alone: false,
    };
    let whole = Share {
        max_memory: plan.max_memory,
        alone: true,
    };
    let ahead = workers * AHEAD_PER_WORKER;
    // Two locks: a worker waiting for the next input (a list's next line, say) holds only the
    // inputs', never the one reports and stops need.
    let inputs = std::sync::Mutex::new((inputs, 0usize));
    let pace = Pace {
        state: std::sync::Mutex::new(Progress {
            taken: 0,
            reported: 0,
            stopped: false,
        }),
        moved: std::sync::Condvar::new(),
    };
    let mut deferred = Vec::new();
    let mut run_wide = None;
    std::thread::scope(|scope| {
        let (done, finished) = std::sync::mpsc::channel();
        for _ in 0..workers {
            let done = done.clone();
            let (inputs, pace, work, alone) = (&inputs, &pace, &work, &alone);
            scope.spawn(move || {
                // A panic here stops the batch, rather than leave the others waiting for its
                // report; the scope then passes the panic on.
                let _stop = StopOnPanic(pace);
                while pace.room(ahead) {
                    let (index, input) = {
                        let mut inputs = inputs.lock().unwrap_or_else(PoisonError::into_inner);
                        let Some(input) = inputs.0.next() else {
                            break;
                        };
                        inputs.1 += 1;
                        (inputs.1 - 1, input)
                    };
                    pace.taken(index + 1);
                    let outcome = (!alone(&input)).then(|| work(&input, share));
                    if matches!(&outcome, Some(Err(e)) if e.kind() == ErrorKind::RunWide) {
                        pace.stop();
                    }
                    if done.send((index, input, outcome)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done);
        let _stop = StopOnPanic(&pace);
        // Reported in input order as they complete: a slow input holds back those after it.
        let mut waiting = BTreeMap::new();
        let mut next_report = 0;
        for (index, input, outcome) in finished {
            waiting.insert(index, (input, outcome));
            while let Some((input, outcome)) = waiting.remove(&next_report) {
                match outcome {
                    _ if run_wide.is_some() => {}
                    Some(Err(error)) if error.kind() == ErrorKind::RunWide => {
                        pace.stop();
                        run_wide = Some(error);
                    }
                    Some(Err(error)) if error.is_over_budget() => deferred.push(input),
                    Some(outcome) => report(&input, outcome),
                    None => deferred.push(input),
                }
                next_report += 1;
            }
            pace.reported(next_report);
        }
    });
    if let Some(error) = run_wide {
        return Err(error);
    }
    for input in deferred {
        match work(&input, whole) {
            Err(error) if error.kind() == ErrorKind::RunWide => return Err(error),
            outcome => report(&input, outcome),
        }
    }
    Ok(())
}

/// How many inputs per worker [`run`] takes beyond the oldest one not yet reported.
pub const AHEAD_PER_WORKER: usize = 64;

/// How far a [`run`]'s workers may go: inputs taken and reported, and whether it stopped.
struct Progress {
    taken: usize,
    reported: usize,
    /// Set by a run-wide failure or a panic: no input is taken after it.
    stopped: bool,
}

struct Pace {
    state: std::sync::Mutex<Progress>,
    moved: std::sync::Condvar,
}

impl Pace {
    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until fewer than `ahead` inputs are taken and not reported; `false` once stopped.
    fn room(&self, ahead: usize) -> bool {
        let mut state = self.lock();
        while !state.stopped && state.taken >= state.reported + ahead {
            state = self
                .moved
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        !state.stopped
    }

    fn taken(&self, count: usize) {
        let mut state = self.lock();
        state.taken = state.taken.max(count);
    }

    fn reported(&self, count: usize) {
        self.lock().reported = count;
        self.moved.notify_all();
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.moved.notify_all();
    }
}

/// Stops a [`Pace`] if dropped while its thread panics.
struct StopOnPanic<'a>(&'a Pace);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop();
        }
    }
}

/// Where the output images of the input named `stem` go in `folder`: `{stem}-{name}.{extension}`
/// for each of the operation's [`output_names`](crate::Operation::output_names) (an edge image
/// of `scan.png` as PNG: `scan-edge.png`), in [`FilterOutput`](crate::FilterOutput) order.
/// The stem is taken as it is, bytes that are not UTF-8 included.
pub fn output_paths(
    folder: &std::path::Path,
    stem: impl AsRef<std::ffi::OsStr>,
    operation: &crate::Operation,
    extension: &str,
) -> Vec<std::path::PathBuf> {
    operation
        .output_names()
        .iter()
        .map(|name| {
            let mut file = stem.as_ref().to_owned();
            file.push(format!("-{name}.{extension}"));
            folder.join(file)
        })
        .collect()
}

/// Filters every source into its destination with [`filter_image`](super::filter_image), as
/// [`run`] spreads them (a worker per input at once, each reading band by band within its share
/// of `plan`'s memory budget, over-share inputs again alone afterwards), the engine shared; each
/// outcome goes to `report` in input order. `settings`' limits give the pixel limit (the memory
/// budget is the plan's). A run-wide failure (no GPU, one lost for good) stops the batch and is
/// returned.
pub fn filter_all(
    engine: &std::sync::Arc<super::SharedEngine>,
    plan: &Batch,
    jobs: &[(super::Source, super::Destination)],
    settings: &super::Settings<'_>,
    mut report: impl FnMut(&super::Source, crate::Result<super::Filtered>),
) -> crate::Result<()> {
    run(
        plan,
        jobs,
        |_| false,
        |&(source, destination), share| {
            let settings = super::Settings {
                limits: crate::io::ReadLimits {
                    max_memory: share.max_memory,
                    ..settings.limits
                },
                images: Some(jobs.len() as u64),
                ..*settings
            };
            super::filter_image(engine, source, destination, &settings)
        },
        |&(source, _), outcome| report(source, outcome),
    )
}

/// Refuses, before anything is read, a batch whose `outputs` would overwrite one of its
/// `inputs` ([`Error::OutputIsInput`]; files are compared by device and inode on Unix, so a hard
/// link, a bind mount or a symbolic link to an input counts as that input) or would write one
/// file twice ([`Error::OutputTwice`]). [`OutputCheck`] does the same job by job, for inputs
/// that come one at a time.
pub fn check_outputs<'a>(
    inputs: impl IntoIterator<Item = &'a std::path::Path>,
    outputs: impl IntoIterator<Item = &'a std::path::Path>,
) -> crate::Result<()> {
    OutputCheck::default().add(inputs, outputs)
}

/// The outputs of a batch whose inputs come one at a time (a list read as it is consumed),
/// checked job by job as [`check_outputs`] checks a whole batch: a job is refused if one of its
/// outputs is an input of this job or an earlier one, or an output already planned, or if one
/// of its inputs is an earlier job's output. It keeps a few tens of bytes per job (a hash of
/// each output's path, each file's device and inode), not the paths.
#[derive(Debug, Default)]
pub struct OutputCheck {
    inputs: std::collections::HashSet<Identity>,
    outputs: std::collections::HashSet<u64>,
    /// The outputs that were files already when they were checked.
    output_files: std::collections::HashSet<Identity>,
}

/// A path's hash, for [`OutputCheck`]: a collision between two of a batch's paths (about one
/// chance in 2^64 per pair) would refuse a job, never let one overwrite another.
fn path_hash(path: &std::path::Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut hasher);
    hasher.finish()
}

/// A file as [`file_identity`] knows it.
type Identity = (u64, u64, std::path::PathBuf);

impl OutputCheck {
    /// Checks one job, its `inputs` and `outputs`, against itself and every job added before;
    /// a job refused is not added.
    pub fn add<'a>(
        &mut self,
        inputs: impl IntoIterator<Item = &'a std::path::Path>,
        outputs: impl IntoIterator<Item = &'a std::path::Path>,
    ) -> crate::Result<()> {
        let mut inputs_here = Vec::new();
        for input in inputs {
            let identity = file_identity(input);
            if self.outputs.contains(&path_hash(input))
                || identity
                    .as_ref()
                    .is_some_and(|i| self.output_files.contains(i))
            {
                return Err(Error::OutputIsInput {
                    path: input.to_owned(),
                });
            }
            inputs_here.extend(identity);
        }
        let mut outputs_here: Vec<(&std::path::Path, Option<Identity>)> = Vec::new();
        for output in outputs {
            if self.outputs.contains(&path_hash(output))
                || outputs_here.iter().any(|(o, _)| *o == output)
            {
                return Err(Error::OutputTwice {
                    path: output.to_owned(),
                });
            }
            let identity = file_identity(output);
            if identity
                .as_ref()
                .is_some_and(|i| self.inputs.contains(i) || inputs_here.contains(i))
            {
                return Err(Error::OutputIsInput {
                    path: output.to_owned(),
                });
            }
            outputs_here.push((output, identity));
        }
        self.inputs.extend(inputs_here);
        for (output, identity) in outputs_here {
            self.outputs.insert(path_hash(output));
            self.output_files.extend(identity);
        }
        Ok(())
    }
}

/// What identifies a file whatever path reaches it (a hard link, a bind mount, a symbolic
/// link, `..`): its device and inode on Unix, its resolved path elsewhere.
fn file_identity(path: &std::path::Path) -> Option<Identity> {
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((metadata.dev(), metadata.ino(), std::path::PathBuf::new()))
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        Some((0, 0, path.canonicalize().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn over_budget() -> Error {
        Error::FileOverBudget {
            path: PathBuf::from("big"),
            bytes: 10,
            budget: 1,
        }
    }

    #[test]
    fn outcomes_come_in_input_order_with_over_budget_and_alone_inputs_last() {
        let inputs: Vec<u32> = (0..40).collect();
        let plan = Batch {
            workers: 4,
            max_memory: 400,
        };
        let shares = Mutex::new(Vec::new());
        let mut reported = Vec::new();
        run(
            &plan,
            inputs.iter().copied(),
            |&i| i == 7,
            |&i, share| {
                shares.lock().unwrap().push((i, share));
                // Later inputs finish first, so order comes from the batch, not the workers.
                std::thread::sleep(std::time::Duration::from_micros(u64::from(40 - i) * 50));
                match i {
                    3 if !share.alone => Err(over_budget()),
                    5 => Err(Error::NoKernel),
                    _ => Ok(i * 10),
                }
            },
            |&i, outcome| reported.push((i, outcome.map_err(|e| e.kind()))),
        )
        .unwrap();
        let order: Vec<u32> = reported.iter().map(|(i, _)| *i).collect();
        let mut expected: Vec<u32> = (0..40).filter(|&i| i != 3 && i != 7).collect();
        expected.extend([3, 7]);
        assert_eq!(order, expected);
        assert_eq!(reported[4], (5, Err(ErrorKind::Input)));
        assert_eq!(reported[38], (3, Ok(30)));
        let shares = shares.into_inner().unwrap();
        assert!(
            shares
                .iter()
                .any(|&(i, s)| i == 3 && s.max_memory == 100 && !s.alone)
        );
        assert!(shares.contains(&(
            3,
            Share {
                max_memory: 400,
                alone: true
            }
        )));
        assert!(shares.contains(&(
            7,
            Share {
                max_memory: 400,
                alone: true
            }
        )));
        assert_eq!(
            shares.iter().filter(|(i, _)| *i == 7).count(),
            1,
            "alone runs once"
        );
    }

    #[test]
    fn outputs_are_named_by_the_input_and_each_image() {
        use crate::{Combine, Kernel, Operation};
        let operation = Operation::new(
            vec![Kernel::vertical_lines(), Kernel::horizontal_lines()],
            Combine::Threshold(200),
            true,
        )
        .unwrap();
        let paths = output_paths(std::path::Path::new("out"), "scan", &operation, "png");
        let expected = ["threshold200", "vertical", "horizontal"]
            .map(|name| PathBuf::from(format!("out/scan-{name}.png")));
        assert_eq!(paths, expected);
    }

    #[test]
    fn outputs_that_are_an_input_or_written_twice_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.png");
        std::fs::write(&input, b"x").unwrap();
        let link = dir.path().join("link.png");
        std::fs::hard_link(&input, &link).unwrap();
        let other = dir.path().join("out.png");
        let inputs = [input.as_path()];
        assert!(check_outputs(inputs, [other.as_path()]).is_ok());
        assert!(matches!(
            check_outputs(inputs, [other.as_path(), link.as_path()]),
            Err(Error::OutputIsInput { path }) if path == link
        ));
        assert!(matches!(
            check_outputs(inputs, [other.as_path(), other.as_path()]),
            Err(Error::OutputTwice { path }) if path == other
        ));
    }

    #[test]
    fn inputs_are_taken_as_they_are_consumed_and_never_far_ahead_of_the_reports() {
        let plan = Batch {
            workers: 2,
            max_memory: 100,
        };
        let taken = AtomicUsize::new(0);
        let reported = AtomicUsize::new(0);
        let most_ahead = AtomicUsize::new(0);
        let inputs = (0..1000u32).inspect(|_| {
            taken.fetch_add(1, Ordering::SeqCst);
        });
        let mut order = Vec::new();
        run(
            &plan,
            inputs,
            |_| false,
            |&i, _| {
                // The first input is slow: the other worker runs ahead, but not far.
                if i == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                }
                let ahead = taken.load(Ordering::SeqCst) - reported.load(Ordering::SeqCst);
                most_ahead.fetch_max(ahead, Ordering::SeqCst);
                Ok::<_, Error>(i)
            },
            |&i, outcome| {
                reported.fetch_add(1, Ordering::SeqCst);
                order.push((i, outcome.unwrap()));
            },
        )
        .unwrap();
        assert_eq!(order, (0..1000).map(|i| (i, i)).collect::<Vec<_>>());
        let most_ahead = most_ahead.into_inner();
        assert!(
            // Two workers may each take one more as they pass the check together.
            (AHEAD_PER_WORKER..=2 * AHEAD_PER_WORKER + 2).contains(&most_ahead),
            "{most_ahead} inputs taken ahead of the reports"
        );
    }

    #[test]
    fn outputs_are_checked_job_by_job_against_every_earlier_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("a.png"), b"x").unwrap();
        std::fs::write(path("old-edge.png"), b"x").unwrap();
        let mut check = OutputCheck::default();
        check
            .add([path("a.png").as_path()], [path("a-edge.png").as_path()])
            .unwrap();
        // Written twice, by a later job.
        assert!(matches!(
            check.add([path("b.png").as_path()], [path("a-edge.png").as_path()]),
            Err(Error::OutputTwice { path: p }) if p == path("a-edge.png")
        ));
        // A later job overwriting an earlier one's input.
        assert!(matches!(
            check.add([path("c.png").as_path()], [path("a.png").as_path()]),
            Err(Error::OutputIsInput { path: p }) if p == path("a.png")
        ));
        // A later job reading an earlier one's output, existing or planned.
        check
            .add([path("d.png").as_path()], [path("old-edge.png").as_path()])
            .unwrap();
        for earlier in ["old-edge.png", "a-edge.png"] {
            assert!(matches!(
                check.add([path(earlier).as_path()], [path("e-edge.png").as_path()]),
                Err(Error::OutputIsInput { path: p }) if p == path(earlier)
            ));
        }
        // A refused job was not added: its output is still free.
        check
            .add([path("b.png").as_path()], [path("b-edge.png").as_path()])
            .unwrap();
    }

    #[test]
    fn a_panic_in_a_worker_or_a_report_ends_the_batch_rather_than_hang_it() {
        for in_report in [false, true] {
            let (finished, wait) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let outcome = std::panic::catch_unwind(|| {
                    let plan = Batch {
                        workers: 2,
                        max_memory: 100,
                    };
                    run(
                        &plan,
                        0..1000u32,
                        |_| false,
                        |&i, _| {
                            assert!(in_report || i != 0, "worker panics");
                            Ok::<_, Error>(i)
                        },
                        |&i, _| assert!(!in_report || i != 3, "report panics"),
                    )
                });
                let _ = finished.send(outcome.is_err());
            });
            let panicked = wait
                .recv_timeout(std::time::Duration::from_secs(20))
                .expect("the batch ended");
            assert!(panicked, "the panic is passed on (in report: {in_report})");
        }
    }

    #[test]
    fn a_run_wide_failure_stops_the_batch_and_is_returned() {
        let inputs: Vec<u32> = (0..1000).collect();
        let plan = Batch {
            workers: 2,
            max_memory: 100,
        };
        let started = AtomicUsize::new(0);
        let mut reported = Vec::new();
        let result = run(
            &plan,
            inputs.iter().copied(),
            |_| false,
            |&i, _| {
                started.fetch_add(1, Ordering::Relaxed);
                if i == 10 {
                    Err(Error::Gpu("lost".into()))
                } else {
                    Ok(i)
                }
            },
            |&i, _| reported.push(i),
        );
        assert!(matches!(result, Err(Error::Gpu(_))));
        assert_eq!(
            reported,
            (0..10).collect::<Vec<_>>(),
            "the inputs before it, in order"
        );
        assert!(
            started.load(Ordering::Relaxed) < 1000,
            "the rest never started"
        );
    }
}
