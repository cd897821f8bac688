//! Passes: checking the dispatch fits the device, building bind groups, recording dispatches.
//! Used by [`FilterPass`] (the caller's resources) and by the strip scheduler (the engine's own).

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::params::{Conv3x3Params, VECTOR_BYTES};

use super::pipeline::{Conv3x3Pipeline, Variant, WORKGROUP_SIZE};
use super::resources::Binding;

/// One filtering pass over fixed resources, ready to record: built by
/// [`GpuEngine::prepare`](super::GpuEngine::prepare), it holds the uniform data and bind group, so
/// recording it again (every frame of a video, say) costs one dispatch and nothing else.
#[derive(Debug, Clone)]
pub struct FilterPass {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    grid: (u32, u32),
    variant: Variant,
}

impl FilterPass {
    /// Builds the pass's uniform buffer and bind group.
    pub(crate) fn new(
        device: &wgpu::Device,
        pipeline: &Conv3x3Pipeline,
        params: &Conv3x3Params,
        source: &Binding,
        target: &Binding,
    ) -> Result<Self> {
        let grid = dispatch_grid(&device.limits(), params)?;
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("gpuconv::conv3x3::params"),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let variant = Variant::of(params, source.size(), target.size());
        Ok(Self {
            pipeline: pipeline.get(device, &variant)?,
            bind_group: bind_group(
                device,
                pipeline,
                &uniform,
                source,
                target,
                variant.target_align == VECTOR_BYTES,
            ),
            grid,
            variant,
        })
    }

    /// The shape this pass's pipeline was compiled for.
    pub fn variant(&self) -> &Variant {
        &self.variant
    }

    /// Records the pass into `encoder`. Nothing is submitted, polled or read back: the caller
    /// submits the encoder when it likes, and orders this pass with its own work by recording
    /// them in the order they must run.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        record(encoder, &self.pipeline, &self.bind_group, self.grid, None);
    }

    /// Records the dispatch into a compute pass the caller has already begun (with its own
    /// label or timestamp writes, say). It sets the pipeline and bind group 0, so the caller
    /// sets its own again before dispatching more work in the same pass.
    pub fn encode_in_pass(&self, pass: &mut wgpu::ComputePass<'_>) {
        dispatch(pass, &self.pipeline, &self.bind_group, self.grid);
    }
}

/// The workgroup grid for `params`, or an error when the device cannot dispatch that many.
pub(crate) fn dispatch_grid(limits: &wgpu::Limits, params: &Conv3x3Params) -> Result<(u32, u32)> {
    let max_per_dimension = limits.max_compute_workgroups_per_dimension;
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
    Ok(grid)
}

/// The bind group of one pass: `uniform` holds its [`Conv3x3Params`]; every binding the source
/// and target leave unused gets the pipeline's placeholder. A buffer target is bound as
/// `output4` when `vector_target` (the variant's `TARGET_ALIGN` is 16), else as `output`.
pub(crate) fn bind_group<'a>(
    device: &wgpu::Device,
    pipeline: &'a Conv3x3Pipeline,
    uniform: &wgpu::Buffer,
    source: &'a Binding,
    target: &'a Binding,
    vector_target: bool,
) -> wgpu::BindGroup {
    let buffer_binding = |buffer, offset, size| {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset,
            size: wgpu::BufferSize::new(size),
        })
    };
    // A range as `vec4<u32>`s: whole 16-byte groups only (the shader reads and writes that
    // view only where `Variant::of` found them inside the range), or the placeholder when not
    // even one fits.
    let vector_binding = |buffer, offset, size: u64, placeholder: &'a wgpu::Buffer| {
        let groups = size / u64::from(VECTOR_BYTES) * u64::from(VECTOR_BYTES);
        if groups == 0 {
            placeholder.as_entire_binding()
        } else {
            buffer_binding(buffer, offset, groups)
        }
    };
    let (input, input4, input_texture) = match source {
        Binding::Buffer {
            buffer,
            offset,
            size,
        } => (
            buffer_binding(buffer, *offset, *size),
            vector_binding(buffer, *offset, *size, &pipeline.placeholder_input),
            &pipeline.placeholder_texture,
        ),
        Binding::Texture(view) => (
            pipeline.placeholder_input.as_entire_binding(),
            pipeline.placeholder_input.as_entire_binding(),
            view,
        ),
    };
    let (output, output4, rgba8, r32uint) = match target {
        Binding::Buffer {
            buffer,
            offset,
            size,
        } if vector_target => (
            pipeline.placeholder_output.as_entire_binding(),
            vector_binding(buffer, *offset, *size, &pipeline.placeholder_output4),
            &pipeline.placeholder_rgba8,
            &pipeline.placeholder_r32uint,
        ),
        Binding::Buffer {
            buffer,
            offset,
            size,
        } => (
            buffer_binding(buffer, *offset, *size),
            pipeline.placeholder_output4.as_entire_binding(),
            &pipeline.placeholder_rgba8,
            &pipeline.placeholder_r32uint,
        ),
        Binding::Texture(view) => {
            let output = pipeline.placeholder_output.as_entire_binding();
            let output4 = pipeline.placeholder_output4.as_entire_binding();
            if view.texture().format() == wgpu::TextureFormat::R32Uint {
                (output, output4, &pipeline.placeholder_rgba8, view)
            } else {
                (output, output4, view, &pipeline.placeholder_r32uint)
            }
        }
    };
    let entry = |binding, resource| wgpu::BindGroupEntry { binding, resource };
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("gpuconv::conv3x3::bind_group"),
        layout: &pipeline.bind_group_layout,
        entries: &[
            entry(0, uniform.as_entire_binding()),
            entry(1, input),
            entry(2, output),
            entry(3, wgpu::BindingResource::TextureView(input_texture)),
            entry(4, wgpu::BindingResource::TextureView(rgba8)),
            entry(5, wgpu::BindingResource::TextureView(r32uint)),
            entry(6, input4),
            entry(7, output4),
        ],
    })
}

/// Records one compute pass with one dispatch, writing timestamps around it when asked.
pub(crate) fn record(
    encoder: &mut wgpu::CommandEncoder,
    pipeline: &wgpu::ComputePipeline,
    bind_group: &wgpu::BindGroup,
    grid: (u32, u32),
    timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("gpuconv::conv3x3::pass"),
        timestamp_writes,
    });
    dispatch(&mut pass, pipeline, bind_group, grid);
}

fn dispatch(
    pass: &mut wgpu::ComputePass<'_>,
    pipeline: &wgpu::ComputePipeline,
    bind_group: &wgpu::BindGroup,
    grid: (u32, u32),
) {
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, bind_group, &[]);
    pass.dispatch_workgroups(grid.0, grid.1, 1);
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
