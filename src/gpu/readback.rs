//! Getting results back to the CPU: mapping staging buffers and unpacking planes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::params::Conv3x3Params;

/// Maps `slice` for reading and blocks until it is mapped (or the device failed). A failure to
/// map is returned as an error, not left to the device's uncaptured-error handler.
pub fn map_blocking(device: &wgpu::Device, slice: wgpu::BufferSlice<'_>) -> Result<()> {
    let (sender, receiver) = mpsc::channel();
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    slice.map_async(wgpu::MapMode::Read, move |result| {
        // The receiver outlives the poll below; a send error can only mean it is gone.
        let _ = sender.send(result);
    });
    if let Some(error) = pollster::block_on(scope.pop()) {
        return Err(Error::Readback(error.to_string()));
    }
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Readback(e.to_string()))?;
    receiver
        .recv()
        .map_err(|_| Error::Readback("the map callback never ran".to_owned()))?
        .map_err(|e| Error::Readback(e.to_string()))
}

/// Maps `buffer`'s first `size` bytes, hands them to `read`, and unmaps the buffer on every
/// path, so a failure leaves it ready for the next submission.
pub fn read_mapped<T>(
    device: &wgpu::Device,
    buffer: &wgpu::Buffer,
    size: u64,
    read: impl FnOnce(&[u8]) -> T,
) -> Result<T> {
    let slice = buffer.slice(..size);
    map_blocking(device, slice)?;
    let result = slice
        .get_mapped_range()
        .map(|view| read(&view))
        .map_err(|e| Error::Readback(e.to_string()));
    buffer.unmap();
    result
}

/// Copies each output image out of the mapped staging bytes, dropping the padding that makes
/// every row start on a word.
pub fn unpack_planes(mapped: &[u8], params: &Conv3x3Params) -> Vec<Vec<u8>> {
    let (width, height) = (params.out_width as usize, params.out_height as usize);
    let (row_stride, plane_stride) = (params.out_stride as usize, params.plane_stride as usize);
    (0..params.plane_count() as usize)
        .map(|p| {
            let mut plane = Vec::with_capacity(width * height);
            for row in mapped[p * plane_stride..].chunks(row_stride).take(height) {
                plane.extend_from_slice(&row[..width]);
            }
            plane
        })
        .collect()
}

/// Maps `slice` for reading without blocking: the future resolves once the GPU is done with the
/// buffer. On native targets each poll of the future also polls the device, without waiting, so
/// no other thread needs to; on the web the browser completes the mapping by itself.
pub async fn map_async(device: &wgpu::Device, slice: wgpu::BufferSlice<'_>) -> Result<()> {
    let state = Arc::new(Mutex::new(MapState {
        result: None,
        waker: None,
    }));
    let callback_state = Arc::clone(&state);
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    slice.map_async(wgpu::MapMode::Read, move |result| {
        let mut state = callback_state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.result = Some(result);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    });
    if let Some(error) = scope.pop().await {
        return Err(Error::Readback(error.to_string()));
    }
    MapFuture { device, state }
        .await
        .map_err(|e| Error::Readback(e.to_string()))
}

struct MapState {
    result: Option<Result<(), wgpu::BufferAsyncError>>,
    waker: Option<Waker>,
}

struct MapFuture<'a> {
    device: &'a wgpu::Device,
    state: Arc<Mutex<MapState>>,
}

impl Future for MapFuture<'_> {
    type Output = Result<(), wgpu::BufferAsyncError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let lock = |state: &Mutex<MapState>| {
            state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .result
                .take()
        };
        if let Some(result) = lock(&self.state) {
            return Poll::Ready(result);
        }
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .waker = Some(cx.waker().clone());
        // Runs the callback if the GPU has finished; never waits. A no-op on the web. A lost
        // device also fails the mapping, which reports it, so the poll's own error adds nothing.
        let _ = self.device.poll(wgpu::PollType::Poll);
        if let Some(result) = lock(&self.state) {
            return Poll::Ready(result);
        }
        if cfg!(not(target_arch = "wasm32")) {
            // Native: nothing else will poll the device, so ask to be polled again.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
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

    /// Reads the two timestamps once the submission is done; the pass's duration.
    pub fn read(&self, device: &wgpu::Device) -> Result<Duration> {
        let ticks: [u64; 2] = read_mapped(device, &self.staging, 16, bytemuck::pod_read_unaligned)?;
        let nanos = ticks[1].saturating_sub(ticks[0]) as f64 * f64::from(self.period_ns);
        Ok(Duration::from_nanos(nanos as u64))
    }
}
