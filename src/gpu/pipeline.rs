//! The compute pipeline and its placeholder resources, built once per device.

use std::num::NonZeroU64;

use crate::params::Conv3x3Params;

/// The WGSL source of the 3×3 convolution shader.
pub const CONV3X3_WGSL: &str = include_str!("../../shaders/conv3x3.wgsl");

/// `WORKGROUP_SIZE` in the shader: invocations per workgroup, four output pixels each.
pub const WORKGROUP_SIZE: u32 = 64;

/// The shader's bind group layout and pipeline, and the placeholders bound where a pass has no
/// resource of that kind (a texture source leaves the input buffer unused, and so on).
#[derive(Debug)]
pub struct Conv3x3Pipeline {
    /// Layout of `@group(0)`: params, input buffer, output buffer, input texture, and the two
    /// storage texture arrays.
    pub bind_group_layout: wgpu::BindGroupLayout,
    /// The `main` entry point.
    pub pipeline: wgpu::ComputePipeline,
    /// Bound as `input` when the source is a texture.
    pub placeholder_input: wgpu::Buffer,
    /// Bound as `output` when the target is a texture.
    pub placeholder_output: wgpu::Buffer,
    /// Bound as `input_texture` when the source is a buffer.
    pub placeholder_texture: wgpu::TextureView,
    /// Bound as `output_rgba8` when the target is not an `Rgba8Unorm` texture.
    pub placeholder_rgba8: wgpu::TextureView,
    /// Bound as `output_r32uint` when the target is not an `R32Uint` texture.
    pub placeholder_r32uint: wgpu::TextureView,
}

impl Conv3x3Pipeline {
    /// Compiles the shader and builds the pipeline on `device`.
    pub fn new(device: &wgpu::Device) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("gpuconv::conv3x3::shader"),
            source: wgpu::ShaderSource::Wgsl(CONV3X3_WGSL.into()),
        });
        let compute = wgpu::ShaderStages::COMPUTE;
        let storage_buffer = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: compute,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: NonZeroU64::new(4),
            },
            count: None,
        };
        let storage_texture = |binding, format| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: compute,
            ty: wgpu::BindingType::StorageTexture {
                access: wgpu::StorageTextureAccess::WriteOnly,
                format,
                view_dimension: wgpu::TextureViewDimension::D2Array,
            },
            count: None,
        };
        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("gpuconv::conv3x3::bind_group_layout"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: compute,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: NonZeroU64::new(size_of::<Conv3x3Params>() as u64),
                    },
                    count: None,
                },
                storage_buffer(1, true),
                storage_buffer(2, false),
                wgpu::BindGroupLayoutEntry {
                    binding: 3,
                    visibility: compute,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    count: None,
                },
                storage_texture(4, wgpu::TextureFormat::Rgba8Unorm),
                storage_texture(5, wgpu::TextureFormat::R32Uint),
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

        let buffer = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 4,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let texture = |label, format, usage, dimension| {
            device
                .create_texture(&wgpu::TextureDescriptor {
                    label: Some(label),
                    size: wgpu::Extent3d {
                        width: 1,
                        height: 1,
                        depth_or_array_layers: 1,
                    },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format,
                    usage,
                    view_formats: &[],
                })
                .create_view(&wgpu::TextureViewDescriptor {
                    dimension: Some(dimension),
                    ..Default::default()
                })
        };
        use wgpu::{TextureFormat as F, TextureUsages as U, TextureViewDimension as D};
        Self {
            bind_group_layout,
            pipeline,
            placeholder_input: buffer("gpuconv::conv3x3::placeholder_input"),
            placeholder_output: buffer("gpuconv::conv3x3::placeholder_output"),
            placeholder_texture: texture(
                "gpuconv::conv3x3::placeholder_texture",
                F::R8Unorm,
                U::TEXTURE_BINDING,
                D::D2,
            ),
            placeholder_rgba8: texture(
                "gpuconv::conv3x3::placeholder_rgba8",
                F::Rgba8Unorm,
                U::STORAGE_BINDING,
                D::D2Array,
            ),
            placeholder_r32uint: texture(
                "gpuconv::conv3x3::placeholder_r32uint",
                F::R32Uint,
                U::STORAGE_BINDING,
                D::D2Array,
            ),
        }
    }
}
