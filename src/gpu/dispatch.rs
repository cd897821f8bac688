//! Buffers, uploads and recording the compute pass.

use crate::error::{Error, Result};
use crate::params::Conv3x3Params;

use super::pipeline::{Conv3x3Pipeline, WORKGROUP_SIZE};

/// The buffers one image needs, kept by the engine and reused while images fit.
#[derive(Debug)]
pub struct Conv3x3Buffers {
    /// `params` uniform.
    pub params: wgpu::Buffer,
    /// Packed input pixels.
    pub input: wgpu::Buffer,
    /// Packed output planes.
    pub output: wgpu::Buffer,
    /// Where output planes are copied to be mapped and read.
    pub staging: wgpu::Buffer,
    /// The bind group over `params`, `input` and `output`.
    pub bind_group: wgpu::BindGroup,
}

/// Bytes of the input buffer `params` read: up to the last pixel of the last row, rounded up to
/// whole words, as buffer copies require.
pub fn input_bytes(params: &Conv3x3Params) -> u64 {
    let last_row =
        u64::from(params.in_offset) + u64::from(params.in_stride) * u64::from(params.in_height - 1);
    (last_row + u64::from(params.in_width)).next_multiple_of(4)
}

/// Bytes of the output buffer that `params` writes.
pub fn output_bytes(params: &Conv3x3Params) -> u64 {
    u64::from(params.plane_count()) * u64::from(params.plane_words) * 4
}

/// Workgroups `(x, y)` covering `params.plane_words` invocations, spilling into y past the
/// device's per-dimension limit.
pub fn workgroup_grid(plane_words: u32, max_per_dimension: u32) -> (u32, u32) {
    let groups = plane_words.div_ceil(WORKGROUP_SIZE).max(1);
    let x = groups.min(max_per_dimension);
    (x, groups.div_ceil(x))
}

/// Checks that a `width × height` image with these parameters fits `limits`, naming the limit
/// when it does not.
pub fn check_fits(params: &Conv3x3Params, limits: &wgpu::Limits) -> Result<()> {
    let too_large = |what, needed, unit, limit_name, limit| Error::TooLargeForDevice {
        width: params.in_width,
        height: params.in_height,
        what,
        needed,
        unit,
        limit_name,
        limit,
    };
    let (binding_limit, binding_name) =
        if limits.max_storage_buffer_binding_size <= limits.max_buffer_size {
            (
                limits.max_storage_buffer_binding_size,
                "max_storage_buffer_binding_size",
            )
        } else {
            (limits.max_buffer_size, "max_buffer_size")
        };
    // The shader addresses bytes with u32 arithmetic.
    let address_limit = u64::from(u32::MAX);
    for (what, needed) in [
        ("input buffer", input_bytes(params)),
        ("output buffer", output_bytes(params)),
    ] {
        if needed > binding_limit {
            return Err(too_large(
                what,
                needed,
                "bytes",
                binding_name,
                binding_limit,
            ));
        }
        if needed > address_limit {
            return Err(too_large(
                what,
                needed,
                "bytes",
                "32-bit shader addressing",
                address_limit,
            ));
        }
    }
    let max_per_dimension = limits.max_compute_workgroups_per_dimension;
    let (_, y) = workgroup_grid(params.plane_words, max_per_dimension);
    if y > max_per_dimension {
        return Err(too_large(
            "dispatch",
            u64::from(params.plane_words.div_ceil(WORKGROUP_SIZE)),
            "workgroups",
            "max_compute_workgroups_per_dimension squared",
            u64::from(max_per_dimension).pow(2),
        ));
    }
    Ok(())
}

impl Conv3x3Buffers {
    /// Buffers for images needing at most `input_bytes` in and `output_bytes` out.
    pub fn new(
        device: &wgpu::Device,
        pipeline: &Conv3x3Pipeline,
        input_bytes: u64,
        output_bytes: u64,
    ) -> Self {
        let buffer = |label, size, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        use wgpu::BufferUsages as U;
        let params = buffer(
            "gpuconv::conv3x3::params",
            size_of::<Conv3x3Params>() as u64,
            U::UNIFORM | U::COPY_DST,
        );
        let input = buffer(
            "gpuconv::conv3x3::input",
            input_bytes,
            U::STORAGE | U::COPY_DST,
        );
        let output = buffer(
            "gpuconv::conv3x3::output",
            output_bytes,
            U::STORAGE | U::COPY_SRC,
        );
        let staging = buffer(
            "gpuconv::conv3x3::staging",
            output_bytes,
            U::MAP_READ | U::COPY_DST,
        );
        let bind_group = bind_group(device, pipeline, &params, &input, &output);
        Self {
            params,
            input,
            output,
            staging,
            bind_group,
        }
    }

    /// Queues the upload of `params` and the tightly packed `pixels`.
    pub fn upload(&self, queue: &wgpu::Queue, params: &Conv3x3Params, pixels: &[u8]) {
        queue.write_buffer(&self.params, 0, bytemuck::bytes_of(params));
        // Buffer writes come in whole words: send the last partial word zero-padded.
        let whole = pixels.len() / 4 * 4;
        if whole > 0 {
            queue.write_buffer(&self.input, 0, &pixels[..whole]);
        }
        if whole < pixels.len() {
            let mut tail = [0u8; 4];
            tail[..pixels.len() - whole].copy_from_slice(&pixels[whole..]);
            queue.write_buffer(&self.input, whole as u64, &tail);
        }
    }
}

/// A bind group for the shader's three bindings.
pub fn bind_group(
    device: &wgpu::Device,
    pipeline: &Conv3x3Pipeline,
    params: &wgpu::Buffer,
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
) -> wgpu::BindGroup {
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("gpuconv::conv3x3::bind_group"),
        layout: &pipeline.bind_group_layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: params.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: input.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: output.as_entire_binding(),
            },
        ],
    })
}

/// Records the convolution pass into `encoder`: nothing is submitted.
pub fn encode_pass(
    encoder: &mut wgpu::CommandEncoder,
    pipeline: &Conv3x3Pipeline,
    bind_group: &wgpu::BindGroup,
    grid: (u32, u32),
    timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("gpuconv::conv3x3::pass"),
        timestamp_writes,
    });
    pass.set_pipeline(&pipeline.pipeline);
    pass.set_bind_group(0, bind_group, &[]);
    pass.dispatch_workgroups(grid.0, grid.1, 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_covers_every_word_and_respects_the_per_dimension_limit() {
        for (words, max) in [
            (1, 65535),
            (64, 65535),
            (65, 65535),
            (64 * 65535 + 1, 65535),
            (1000, 3),
        ] {
            let (x, y) = workgroup_grid(words, max);
            assert!(x <= max);
            assert!(u64::from(x) * u64::from(y) * 64 >= u64::from(words));
            assert!(
                u64::from(x) * u64::from(y - 1) * 64 < u64::from(words),
                "one row of groups too many"
            );
        }
    }
}
