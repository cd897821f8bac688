//! Timing the kernel alone with timestamp queries, when the device has them.

use std::time::Duration;

use crate::error::Result;

use super::transfers::{Waiter, read_mapped};

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
        waiter: &Waiter,
        submission: &wgpu::SubmissionIndex,
    ) -> Result<Duration> {
        let ticks: [u64; 2] = read_mapped(
            waiter,
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
