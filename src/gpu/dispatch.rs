//! Prepared passes, the engine's own buffers, and recording the compute pass.

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::params::Conv3x3Params;

use super::pipeline::{Conv3x3Pipeline, WORKGROUP_SIZE};
use super::resources::{SourceBinding, TargetBinding};

/// One filtering pass over fixed resources, ready to record: built by
/// [`GpuEngine::prepare`](super::GpuEngine::prepare), it holds the uniform data and bind group, so
/// recording it again (every frame of a video, say) costs one dispatch and nothing else.
#[derive(Debug, Clone)]
pub struct FilterPass {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    grid: (u32, u32),
}

impl FilterPass {
    /// Builds the pass's uniform buffer and bind group.
    pub(crate) fn new(
        device: &wgpu::Device,
        pipeline: &Conv3x3Pipeline,
        params: &Conv3x3Params,
        source: &SourceBinding,
        target: &TargetBinding,
    ) -> Result<Self> {
        let max_per_dimension = device.limits().max_compute_workgroups_per_dimension;
        let grid = workgroup_grid(params.invocations(), max_per_dimension);
        if grid.1 > max_per_dimension {
            return Err(Error::TooLargeForDevice {
                width: params.in_width,
                height: params.in_height,
                what: "dispatch",
                needed: u64::from(params.invocations().div_ceil(WORKGROUP_SIZE)),
                unit: "workgroups",
                limit_name: "max_compute_workgroups_per_dimension squared",
                limit: u64::from(max_per_dimension).pow(2),
            });
        }
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("gpuconv::conv3x3::params"),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let buffer_binding = |buffer, offset, size| {
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset,
                size: wgpu::BufferSize::new(size),
            })
        };
        let (input, input_texture) = match source {
            SourceBinding::Buffer {
                buffer,
                offset,
                size,
            } => (
                buffer_binding(buffer, *offset, *size),
                &pipeline.placeholder_texture,
            ),
            SourceBinding::Texture(view) => (pipeline.placeholder_input.as_entire_binding(), view),
        };
        let (output, rgba8, r32uint) = match target {
            TargetBinding::Buffer {
                buffer,
                offset,
                size,
            } => (
                buffer_binding(buffer, *offset, *size),
                &pipeline.placeholder_rgba8,
                &pipeline.placeholder_r32uint,
            ),
            TargetBinding::Texture(view) => {
                let output = pipeline.placeholder_output.as_entire_binding();
                if view.texture().format() == wgpu::TextureFormat::R32Uint {
                    (output, &pipeline.placeholder_rgba8, view)
                } else {
                    (output, view, &pipeline.placeholder_r32uint)
                }
            }
        };
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("gpuconv::conv3x3::bind_group"),
            layout: &pipeline.bind_group_layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: input,
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: output,
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: wgpu::BindingResource::TextureView(input_texture),
                },
                wgpu::BindGroupEntry {
                    binding: 4,
                    resource: wgpu::BindingResource::TextureView(rgba8),
                },
                wgpu::BindGroupEntry {
                    binding: 5,
                    resource: wgpu::BindingResource::TextureView(r32uint),
                },
            ],
        });
        Ok(Self {
            pipeline: pipeline.pipeline.clone(),
            bind_group,
            grid,
        })
    }

    /// Records the pass into `encoder`. Nothing is submitted, polled or read back: the caller
    /// submits the encoder when it likes, and orders this pass with its own work by recording
    /// them in the order they must run.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        self.encode_with_timestamps(encoder, None);
    }

    /// Records the dispatch into a compute pass the caller has already begun (with its own
    /// label or timestamp writes, say). It sets the pipeline and bind group 0, so the caller
    /// sets its own again before dispatching more work in the same pass.
    pub fn encode_in_pass(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.grid.0, self.grid.1, 1);
    }

    /// [`encode`](Self::encode), writing timestamps at the start and end of the pass.
    pub(crate) fn encode_with_timestamps(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("gpuconv::conv3x3::pass"),
            timestamp_writes,
        });
        self.encode_in_pass(&mut pass);
    }
}

/// The engine's own buffers for one strip (the whole image when it fits), kept and reused.
#[derive(Debug)]
pub struct Conv3x3Buffers {
    /// Where the CPU writes input pixels, mapped for writing between uses (and at creation),
    /// and copied into `input` at the start of each submission. Reused, so its pages are
    /// already the process's when the next strip is written.
    pub upload: wgpu::Buffer,
    /// Input pixels, rows starting on words.
    pub input: wgpu::Buffer,
    /// Output images, rows word-aligned.
    pub output: wgpu::Buffer,
    /// Where output images are copied to be mapped and read.
    pub staging: wgpu::Buffer,
}

impl Conv3x3Buffers {
    /// Buffers for images needing at most `input_bytes` in and `output_bytes` out (both
    /// multiples of 4); `upload` comes mapped.
    pub fn new(device: &wgpu::Device, input_bytes: u64, output_bytes: u64) -> Self {
        let buffer = |label, size, usage, mapped_at_creation| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation,
            })
        };
        use wgpu::BufferUsages as U;
        Self {
            upload: buffer(
                "gpuconv::conv3x3::upload",
                input_bytes,
                U::MAP_WRITE | U::COPY_SRC,
                true,
            ),
            input: buffer(
                "gpuconv::conv3x3::input",
                input_bytes,
                U::STORAGE | U::COPY_DST,
                false,
            ),
            output: buffer(
                "gpuconv::conv3x3::output",
                output_bytes,
                U::STORAGE | U::COPY_SRC,
                false,
            ),
            staging: buffer(
                "gpuconv::conv3x3::staging",
                output_bytes,
                U::MAP_READ | U::COPY_DST,
                false,
            ),
        }
    }

    /// Frees the buffers' memory now, before they are dropped.
    pub fn destroy(&self) {
        self.upload.destroy();
        self.input.destroy();
        self.output.destroy();
        self.staging.destroy();
    }
}

/// Writes `pixels`, tightly packed rows of `width`, into a mapped upload range at rows
/// `bytes_per_row` apart (a multiple of 4, at least `width`): each byte is copied once.
pub fn write_rows(view: &mut wgpu::BufferViewMut, pixels: &[u8], width: u32, bytes_per_row: u32) {
    let (width, stride) = (width as usize, bytes_per_row as usize);
    debug_assert!(stride % 4 == 0 && stride >= width);
    if width == stride {
        view.slice(..pixels.len()).copy_from_slice(pixels);
        return;
    }
    for (r, row) in pixels.chunks_exact(width).enumerate() {
        view.slice(r * stride..r * stride + width)
            .copy_from_slice(row);
    }
}

/// Workgroups `(x, y)` covering `invocations`, spilling into y past the device's per-dimension
/// limit.
pub fn workgroup_grid(invocations: u32, max_per_dimension: u32) -> (u32, u32) {
    let groups = invocations.div_ceil(WORKGROUP_SIZE).max(1);
    let x = groups.min(max_per_dimension);
    (x, groups.div_ceil(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_covers_every_invocation_and_respects_the_per_dimension_limit() {
        for (invocations, max) in [
            (1, 65535),
            (64, 65535),
            (65, 65535),
            (64 * 65535 + 1, 65535),
            (1000, 3),
        ] {
            let (x, y) = workgroup_grid(invocations, max);
            assert!(x <= max);
            assert!(u64::from(x) * u64::from(y) * 64 >= u64::from(invocations));
            assert!(
                u64::from(x) * u64::from(y - 1) * 64 < u64::from(invocations),
                "one row of groups too many"
            );
        }
    }
}
