//! Getting results back to the CPU: mapping staging buffers and unpacking planes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::params::Conv3x3Params;

/// Copies the output images of one strip out of the mapped staging bytes into `planes` (each the
/// whole image's size), starting at output row `first_row`, dropping the padding that makes every
/// row start on a word.
pub fn unpack_rows_into(
    mapped: &[u8],
    params: &Conv3x3Params,
    planes: &mut [Vec<u8>],
    first_row: u32,
) {
    let (width, rows) = (params.out_width as usize, params.out_height as usize);
    let (row_stride, plane_stride) = (params.out_stride as usize, params.plane_stride as usize);
    for (p, plane) in planes.iter_mut().enumerate() {
        let destination = plane[first_row as usize * width..]
            .chunks_mut(width)
            .take(rows);
        for (row, target) in mapped[p * plane_stride..]
            .chunks(row_stride)
            .zip(destination)
        {
            target.copy_from_slice(&row[..width]);
        }
    }
}

/// Maps `buffer`'s first `size` bytes once `submission` (the last one writing them) is done,
/// hands them to `read`, and unmaps the buffer however this ends. The blocking API waits on the
/// future with `pollster`.
///
/// On native targets a short-lived helper thread waits on the device, so the future neither
/// blocks its executor nor spins; on the web the browser completes the mapping. If the future is
/// dropped early, the pending mapping is cancelled, leaving the buffer ready for reuse.
pub async fn read_mapped<T>(
    device: &wgpu::Device,
    buffer: &wgpu::Buffer,
    size: u64,
    submission: &wgpu::SubmissionIndex,
    read: impl FnOnce(&[u8]) -> T,
) -> Result<T> {
    with_mapping(
        device,
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
    device: &wgpu::Device,
    buffer: &wgpu::Buffer,
    size: u64,
    submission: &wgpu::SubmissionIndex,
    write: impl FnOnce(&mut wgpu::BufferViewMut),
) -> Result<()> {
    with_mapping(
        device,
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
    device: &wgpu::Device,
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
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let slice = buffer.slice(..size);
    slice.map_async(mode, move |result| {
        let mut state = callback_state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.result = Some(result);
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
    #[cfg(not(target_arch = "wasm32"))]
    {
        // Waiting for this submission only, not later ones, lets strips still in flight run on
        // while this one is mapped.
        let device = device.clone();
        let submission_index = Some(submission.clone());
        std::thread::spawn(move || {
            device.poll(wgpu::PollType::Wait {
                submission_index,
                timeout: None,
            })
        });
    }
    if let Err(map_error) = (MapFuture { state }).await {
        // A failed mapping leaves the buffer unmapped; unmapping again would be an error.
        guard.armed = false;
        return Err(error(map_error.to_string()));
    }
    use_mapped(slice)
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

struct MapState {
    result: Option<Result<(), wgpu::BufferAsyncError>>,
    waker: Option<Waker>,
}

struct MapFuture {
    state: Arc<Mutex<MapState>>,
}

impl Future for MapFuture {
    type Output = Result<(), wgpu::BufferAsyncError>;

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

/// Two timestamps around the compute pass, resolved and read back to time the kernel alone.
#[derive(Debug)]
pub struct PassTimer {
    query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    period_ns: f32,
}

impl PassTimer {
    /// A timer, or `None` when the device was not opened with `TIMESTAMP_QUERY`.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Option<Self> {
        if !device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return None;
        }
        let query_set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("gpuconv::timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        Some(Self {
            query_set,
            resolve: buffer(
                "gpuconv::timestamps::resolve",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            staging: buffer(
                "gpuconv::timestamps::staging",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            period_ns: queue.get_timestamp_period(),
        })
    }

    /// The pass descriptor's timestamp writes.
    pub fn writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.query_set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }

    /// Records the resolve and the copy to the staging buffer, after the pass.
    pub fn encode_resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.query_set, 0..2, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.staging, 0, 16);
    }

    /// Reads the two timestamps once `submission` is done; the pass's duration.
    pub async fn read(
        &self,
        device: &wgpu::Device,
        submission: &wgpu::SubmissionIndex,
    ) -> Result<Duration> {
        let ticks: [u64; 2] = read_mapped(
            device,
            &self.staging,
            16,
            submission,
            bytemuck::pod_read_unaligned,
        )
        .await?;
        let nanos = ticks[1].saturating_sub(ticks[0]) as f64 * f64::from(self.period_ns);
        Ok(Duration::from_nanos(nanos as u64))
    }
}
