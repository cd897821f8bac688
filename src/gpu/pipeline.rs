//! The compute pipeline, built once per device.

use std::num::NonZeroU64;

use crate::params::Conv3x3Params;

/// The WGSL source of the 3×3 convolution shader.
pub const CONV3X3_WGSL: &str = include_str!("../../shaders/conv3x3.wgsl");

/// `WORKGROUP_SIZE` in the shader: invocations per workgroup, one output word each.
pub const WORKGROUP_SIZE: u32 = 64;

/// The shader's bind group layout and pipeline.
#[derive(Debug)]
pub struct Conv3x3Pipeline {
    /// Layout of `@group(0)`: params (uniform), input (read-only storage), output (storage).
    pub bind_group_layout: wgpu::BindGroupLayout,
    /// The `main` entry point.
    pub pipeline: wgpu::ComputePipeline,
}

impl Conv3x3Pipeline {
    /// Compiles the shader and builds the pipeline on `device`.
    pub fn new(device: &wgpu::Device) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("gpuconv::conv3x3::shader"),
            source: wgpu::ShaderSource::Wgsl(CONV3X3_WGSL.into()),
        });
        let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: NonZeroU64::new(4),
            },
            count: None,
        };
        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("gpuconv::conv3x3::bind_group_layout"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: NonZeroU64::new(size_of::<Conv3x3Params>() as u64),
                    },
                    count: None,
                },
                storage(1, true),
                storage(2, false),
            ],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("gpuconv::conv3x3::pipeline_layout"),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("gpuconv::conv3x3::pipeline"),
            layout: Some(&layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        Self {
            bind_group_layout,
            pipeline,
        }
    }
}
