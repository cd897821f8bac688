//! Moving pixels between the CPU and the engine's buffers: writing strips into mapped upload
//! buffers, mapping staging buffers and unpacking their rows, and the one thread that waits on
//! the device while a mapping is pending.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::params::Conv3x3Params;

/// Waits on the device for the submissions whose mappings are pending, so that a mapping's
/// future neither blocks its executor nor spins: one thread per engine, started on its first
/// run, fed submission indices in the order they are needed. On the web the browser completes
/// mappings, and there is no thread.
#[derive(Debug)]
pub struct Waiter {
    device: wgpu::Device,
    /// Closed first when the waiter is dropped, which ends the thread.
    #[cfg(not(target_arch = "wasm32"))]
    requests: Option<std::sync::mpsc::Sender<(wgpu::SubmissionIndex, Arc<Mutex<MapState>>)>>,
    #[cfg(not(target_arch = "wasm32"))]
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Waiter {
    /// Starts the waiting thread for `device`; it ends when the waiter is dropped.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let (requests, pending) =
                std::sync::mpsc::channel::<(wgpu::SubmissionIndex, Arc<Mutex<MapState>>)>();
            let polled = device.clone();
            let thread = std::thread::Builder::new()
                .name("gpuconv-waiter".into())
                .spawn(move || {
                    for (submission, state) in pending {
                        wait(&polled, submission, &state);
                    }
                })
                .map_err(|e| {
                    Error::Gpu(format!("starting the thread that waits on the GPU: {e}"))
                })?;
            Ok(Self {
                device: device.clone(),
                requests: Some(requests),
                thread: Some(thread),
            })
        }
        #[cfg(target_arch = "wasm32")]
        {
            Ok(Self {
                device: device.clone(),
            })
        }
    }

    /// Has the device polled until `submission` is done, which completes the mappings waiting
    /// on it; if that wait fails, the mapping whose `state` this is fails with it.
    fn wait_for(&self, submission: &wgpu::SubmissionIndex, state: &Arc<Mutex<MapState>>) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let sent = self
                .requests
                .as_ref()
                .is_some_and(|r| r.send((submission.clone(), Arc::clone(state))).is_ok());
            if !sent {
                // The thread is gone (it can only have panicked): wait here instead.
                wait(&self.device, submission.clone(), state);
            }
        }
        #[cfg(target_arch = "wasm32")]
        let _ = (submission, state);
    }
}

/// Polls `device` until `submission` is done. Waiting for this submission only, not later ones,
/// lets the strips behind it run on while its results are read. When the wait fails (a lost
/// device), the mapping callbacks may never run: the mapping waiting on it fails instead of
/// waiting for ever.
#[cfg(not(target_arch = "wasm32"))]
fn wait(device: &wgpu::Device, submission: wgpu::SubmissionIndex, state: &Mutex<MapState>) {
    let waited = device.poll(wgpu::PollType::Wait {
        submission_index: Some(submission),
        timeout: None,
    });
    if let Err(error) = waited {
        let mut state = state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state
            .result
            .get_or_insert(Err(MapFailure::Wait(error.to_string())));
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

impl Drop for Waiter {
    /// Waits for the thread to end: it holds the device, and a driver torn down at process exit
    /// while a thread still polls it can crash (NVIDIA's did, at the end of `gpuconv bench`).
    fn drop(&mut self) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.requests = None;
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// A disjoint part of a write mapping, to be filled on another thread.
struct MappedPart<'a>(wgpu::WriteOnly<'a, [u8]>);

// SAFETY: `WriteOnly<[u8]>` is exclusive, write-only access to bytes, like `&mut [u8]`, which is
// `Send`; wgpu's own impl (`T: Send`) leaves out unsized `T` only because the bound implies
// `Sized`. Each part covers its own range of the mapping, which outlives the parallel copy.
unsafe impl Send for MappedPart<'_> {}

/// Bytes of rows copied per task when a strip's rows are copied on several threads: large enough
/// to amortise the task, small enough to spread a 32 MiB strip over any number of cores.
const COPY_TASK_BYTES: usize = 1 << 20;

/// Writes `pixels`, tightly packed rows of `width`, into a mapped upload range at rows
/// `bytes_per_row` apart (a multiple of 4, at least `width`): each byte is copied once.
pub fn write_rows(view: &mut wgpu::BufferViewMut, pixels: &[u8], width: u32, bytes_per_row: u32) {
    let (width, stride) = (width as usize, bytes_per_row as usize);
    debug_assert!(stride % 4 == 0 && stride >= width);
    // Groups of rows, each with the part of the mapping it fills, copied on all cores: one
    // thread copies a large strip at a fraction of the bus's speed.
    let rows_per_task = (COPY_TASK_BYTES / stride).max(1);
    let mut rest = view.slice(..);
    let mut tasks = Vec::new();
    for group in pixels.chunks(rows_per_task * width) {
        let rows = group.len() / width;
        // The mapping may end at the last row's last word rather than a whole stride after it.
        let length = (rows * stride).min(rest.len());
        let (part, tail) = rest.split_at(length);
        tasks.push((MappedPart(part), group));
        rest = tail;
    }
    tasks
        .into_par_iter()
        .for_each(|(MappedPart(mut part), group)| {
            if width == stride {
                part.slice(..group.len()).copy_from_slice(group);
            } else {
                for (r, row) in group.chunks_exact(width).enumerate() {
                    part.slice(r * stride..r * stride + width)
                        .copy_from_slice(row);
                }
            }
        });
}

/// Copies the output images of one strip out of the mapped staging bytes into `planes` (each the
/// whole image's size), starting at output row `first_row`, dropping the padding that makes every
/// row start on a word.
pub fn unpack_rows_into(
    mapped: &[u8],
    params: &Conv3x3Params,
    planes: &mut [&mut [u8]],
    first_row: u32,
) {
    // `width` in bytes: 4 a pixel for unclipped sums.
    let (width, rows) = (params.out_row_bytes() as usize, params.out_height as usize);
    let (row_stride, bytes_per_image) = (
        params.out_bytes_per_row as usize,
        params.bytes_per_image as usize,
    );
    let rows_per_task = (COPY_TASK_BYTES / row_stride).max(1);
    for (p, plane) in planes.iter_mut().enumerate() {
        let first = first_row as usize * width;
        let destination = &mut plane[first..first + rows * width];
        // The last row of the mapping may stop at its last word, short of a whole stride.
        let source = &mapped[p * bytes_per_image..];
        destination
            .par_chunks_mut(rows_per_task * width)
            .enumerate()
            .for_each(|(task, targets)| {
                let start = task * rows_per_task * row_stride;
                for (r, target) in targets.chunks_mut(width).enumerate() {
                    let at = start + r * row_stride;
                    target.copy_from_slice(&source[at..at + width]);
                }
            });
    }
}

/// Maps `buffer`'s first `size` bytes once `submission` (the last one writing them) is done,
/// hands them to `read`, and unmaps the buffer however this ends. The blocking API waits on the
/// future with `pollster`. If the future is dropped early, the pending mapping is cancelled,
/// leaving the buffer ready for reuse.
pub async fn read_mapped<T>(
    waiter: &Waiter,
    buffer: &wgpu::Buffer,
    size: u64,
    submission: &wgpu::SubmissionIndex,
    read: impl FnOnce(&[u8]) -> T,
) -> Result<T> {
    with_mapping(
        waiter,
        buffer,
        size,
        wgpu::MapMode::Read,
        submission,
        Error::Readback,
        |slice| {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Readback(e.to_string()))?;
            Ok(read(&view))
        },
    )
    .await
}

/// [`read_mapped`]'s twin for uploads: maps `buffer`'s first `size` bytes for writing once
/// `submission` (the last one reading them) is done, lets `write` fill them, and unmaps the
/// buffer, ready to be copied from by the next submission.
pub async fn write_mapped(
    waiter: &Waiter,
    buffer: &wgpu::Buffer,
    size: u64,
    submission: &wgpu::SubmissionIndex,
    write: impl FnOnce(&mut wgpu::BufferViewMut),
) -> Result<()> {
    with_mapping(
        waiter,
        buffer,
        size,
        wgpu::MapMode::Write,
        submission,
        Error::Gpu,
        |slice| {
            let mut view = slice
                .get_mapped_range_mut()
                .map_err(|e| Error::Gpu(e.to_string()))?;
            write(&mut view);
            Ok(())
        },
    )
    .await
}

/// Maps `buffer`'s first `size` bytes in `mode` once `submission` is done, hands the mapped
/// slice to `use_mapped`, and unmaps the buffer however this ends.
async fn with_mapping<T>(
    waiter: &Waiter,
    buffer: &wgpu::Buffer,
    size: u64,
    mode: wgpu::MapMode,
    submission: &wgpu::SubmissionIndex,
    error: fn(String) -> Error,
    use_mapped: impl FnOnce(wgpu::BufferSlice<'_>) -> Result<T>,
) -> Result<T> {
    let state = Arc::new(Mutex::new(MapState {
        result: None,
        waker: None,
    }));
    let callback_state = Arc::clone(&state);
    let scope = waiter
        .device
        .push_error_scope(wgpu::ErrorFilter::Validation);
    let slice = buffer.slice(..size);
    slice.map_async(mode, move |result| {
        let mut state = callback_state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state
            .result
            .get_or_insert(result.map_err(|e| MapFailure::Mapping(e.to_string())));
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    });
    if let Some(scope_error) = scope.pop().await {
        return Err(error(scope_error.to_string()));
    }
    // From here on the buffer is mapped or about to be: unmap it however this function ends,
    // which also cancels a mapping still pending when the future is dropped.
    let mut guard = UnmapOnDrop {
        buffer,
        armed: true,
    };
    waiter.wait_for(submission, &state);
    match (MapFuture { state }).await {
        Ok(()) => use_mapped(slice),
        Err(MapFailure::Mapping(reason)) => {
            // A failed mapping leaves the buffer unmapped; unmapping again would be an error.
            guard.armed = false;
            Err(error(reason))
        }
        // The mapping is still pending: the guard's unmap cancels it.
        Err(MapFailure::Wait(reason)) => Err(error(format!("waiting for the GPU: {reason}"))),
    }
}

struct UnmapOnDrop<'a> {
    buffer: &'a wgpu::Buffer,
    armed: bool,
}

impl Drop for UnmapOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.buffer.unmap();
        }
    }
}

/// A pending mapping: its outcome once known, and who to wake then.
#[derive(Debug)]
pub struct MapState {
    result: Option<Result<(), MapFailure>>,
    waker: Option<Waker>,
}

/// Why a mapping did not happen.
#[derive(Debug)]
enum MapFailure {
    /// wgpu refused the mapping; the buffer is not mapped.
    Mapping(String),
    /// Waiting for the submission failed; the mapping is still pending.
    Wait(String),
}

struct MapFuture {
    state: Arc<Mutex<MapState>>,
}

impl Future for MapFuture {
    type Output = Result<(), MapFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match state.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                // Stored under the lock the callback takes, so its wake cannot be missed.
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
