//! The shader module, its bind group layout and placeholder resources, built once per device;
//! and the pipelines specialized per [`Variant`], compiled from that module when first needed
//! and kept.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::params::{
    BORDER_VALID, Conv3x3Params, MODE_RESPONSES, SOURCE_BUFFER, TARGET_BUFFER, VECTOR_BYTES,
};

/// The WGSL source of the 3×3 convolution shader.
pub const CONV3X3_WGSL: &str = include_str!("../../shaders/conv3x3.wgsl");

/// `WORKGROUP_SIZE` in the shader: invocations per workgroup.
pub const WORKGROUP_SIZE: u32 = 64;

/// The shape of one pass, compiled into its own pipeline through the shader's overridable
/// constants: everything the shader would otherwise decide per pixel at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// `KERNEL_COUNT`: 1 to 8.
    pub kernel_count: u32,
    /// `INTEGER_MASK`: bit k set when kernel k is summed in integers.
    pub integer_mask: u32,
    /// `MODE`: one of the `MODE_*` constants.
    pub mode: u32,
    /// `WRITE_RESPONSES`.
    pub write_responses: bool,
    /// `BORDER`: one of the `BORDER_*` constants.
    pub border: u32,
    /// `SOURCE_KIND`: one of the `SOURCE_*` constants.
    pub source_kind: u32,
    /// `SOURCE_ALIGN`: 16, 4 or 1.
    pub source_align: u32,
    /// `TARGET_KIND`: one of the `TARGET_*` constants.
    pub target_kind: u32,
    /// `TARGET_ALIGN`: 16 or 4.
    pub target_align: u32,
    /// `ROWS`: output rows per invocation.
    pub rows: u32,
}

impl Variant {
    /// The variant for `params`, whose buffer source and target (if any) are bound over
    /// `source_bytes` and `target_bytes`: the widest loads and stores the layouts allow, and
    /// nothing that cannot change the code (a target's alignment when it is a texture, say)
    /// left to tell two variants apart.
    pub(crate) fn of(params: &Conv3x3Params, source_bytes: u64, target_bytes: u64) -> Self {
        let buffer_source = params.source_kind == SOURCE_BUFFER;
        // Windows past the edges, and textures, are read pixel by pixel whatever the alignment.
        let source_align = if !buffer_source || params.border != BORDER_VALID {
            1
        } else {
            let aligned = |to: u32| {
                params.in_offset.is_multiple_of(to) && params.in_bytes_per_row.is_multiple_of(to)
            };
            // A 16-byte read of the last row's last group must stay inside the bound range.
            let last_group_end = u64::from(params.in_offset)
                + u64::from(params.in_bytes_per_row) * u64::from(params.in_height - 1)
                + u64::from(params.in_width.next_multiple_of(VECTOR_BYTES));
            if aligned(VECTOR_BYTES) && last_group_end <= source_bytes {
                VECTOR_BYTES
            } else if aligned(4) {
                4
            } else {
                1
            }
        };
        let images = params.output_count();
        // The last image's last row's last 16-byte group must be inside the bound range too.
        let last_target_group_end = u64::from(params.out_offset)
            + u64::from(params.bytes_per_image) * u64::from(images - 1)
            + u64::from(params.out_bytes_per_row) * u64::from(params.out_height - 1)
            + u64::from(params.out_row_bytes().next_multiple_of(VECTOR_BYTES));
        let target_align = if params.target_kind == TARGET_BUFFER
            && params.out_offset.is_multiple_of(VECTOR_BYTES)
            && params.out_bytes_per_row.is_multiple_of(VECTOR_BYTES)
            && (images == 1 || params.bytes_per_image.is_multiple_of(VECTOR_BYTES))
            && last_target_group_end <= target_bytes
        {
            VECTOR_BYTES
        } else {
            4
        };
        Self {
            kernel_count: params.kernel_count,
            integer_mask: params.integer_mask & ((1 << params.kernel_count) - 1),
            mode: params.mode,
            write_responses: params.mode != MODE_RESPONSES && params.write_responses != 0,
            border: params.border,
            source_kind: params.source_kind,
            source_align,
            target_kind: params.target_kind,
            target_align,
            rows: params.rows_per_invocation,
        }
    }

    /// The shader's overridable constants for this variant, by name.
    pub fn constants(&self) -> [(&'static str, f64); 10] {
        [
            ("KERNEL_COUNT", f64::from(self.kernel_count)),
            ("INTEGER_MASK", f64::from(self.integer_mask)),
            ("MODE", f64::from(self.mode)),
            ("WRITE_RESPONSES", f64::from(u8::from(self.write_responses))),
            ("BORDER", f64::from(self.border)),
            ("SOURCE_KIND", f64::from(self.source_kind)),
            ("SOURCE_ALIGN", f64::from(self.source_align)),
            ("TARGET_KIND", f64::from(self.target_kind)),
            ("TARGET_ALIGN", f64::from(self.target_align)),
            ("ROWS", f64::from(self.rows)),
        ]
    }
}

/// The shader module, its bind group layout, the pipelines compiled from it so far, and the
/// placeholders bound where a pass has no resource of that kind (a texture source leaves the
/// input buffer unused, and so on).
#[derive(Debug)]
pub struct Conv3x3Pipeline {
    /// Layout of `@group(0)`: params, input buffer, output buffer, input texture, the two
    /// storage texture arrays, and the input and output buffers again as `vec4<u32>` arrays.
    pub bind_group_layout: wgpu::BindGroupLayout,
    layout: wgpu::PipelineLayout,
    module: wgpu::ShaderModule,
    /// The driver's own cache of compiled pipelines, where the device has one (Vulkan);
    /// replaced by one made from saved data with [`load_cache`](Self::load_cache).
    cache: Mutex<Option<wgpu::PipelineCache>>,
    /// Compiled when first asked for, then shared by every pass of that shape.
    pipelines: Mutex<HashMap<Variant, wgpu::ComputePipeline>>,
    /// Bound as `input` and `input4` when the source is a texture.
    pub placeholder_input: wgpu::Buffer,
    /// Bound as `output` when the target is a texture or is written through `output4`.
    pub placeholder_output: wgpu::Buffer,
    /// Bound as `output4` when the target is a texture or is written through `output`: a
    /// buffer of its own, since two writable bindings of one buffer may not be bound at once.
    pub placeholder_output4: wgpu::Buffer,
    /// Bound as `input_texture` when the source is a buffer.
    pub placeholder_texture: wgpu::TextureView,
    /// Bound as `output_rgba8` when the target is not an `Rgba8Unorm` texture.
    pub placeholder_rgba8: wgpu::TextureView,
    /// Bound as `output_r32uint` when the target is not an `R32Uint` texture.
    pub placeholder_r32uint: wgpu::TextureView,
}

impl Conv3x3Pipeline {
    /// Compiles the shader module and builds the layouts on `device`; no pipeline yet, so that
    /// start-up pays for none it does not use.
    pub fn new(device: &wgpu::Device) -> Self {
        // SAFETY: bounds checks stay on (a pass never reads or writes outside its bindings);
        // only the guard Naga adds against infinite loops is left out, because it hides the
        // shader's short loops (at most 8 kernels, 8 rows, 4 pixels) from the driver's
        // unrolling, and every loop in this shader has a bound it reaches.
        let module = unsafe {
            device.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor {
                    label: Some("gpuconv::conv3x3::shader"),
                    source: wgpu::ShaderSource::Wgsl(CONV3X3_WGSL.into()),
                },
                wgpu::ShaderRuntimeChecks {
                    force_loop_bounding: false,
                    ..wgpu::ShaderRuntimeChecks::checked()
                },
            )
        };
        let compute = wgpu::ShaderStages::COMPUTE;
        let storage_buffer = |binding, read_only, min_size| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: compute,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: NonZeroU64::new(min_size),
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
                storage_buffer(1, true, 4),
                storage_buffer(2, false, 4),
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
                storage_buffer(6, true, u64::from(VECTOR_BYTES)),
                storage_buffer(7, false, u64::from(VECTOR_BYTES)),
            ],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("gpuconv::conv3x3::pipeline_layout"),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        let cache = device
            .features()
            .contains(wgpu::Features::PIPELINE_CACHE)
            .then(|| {
                // SAFETY: no data is passed in, so there is nothing to validate.
                unsafe {
                    device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                        label: Some("gpuconv::conv3x3::pipeline_cache"),
                        data: None,
                        fallback: true,
                    })
                }
            });

        let buffer = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: u64::from(VECTOR_BYTES),
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
            layout,
            module,
            cache: Mutex::new(cache),
            pipelines: Mutex::default(),
            placeholder_input: buffer("gpuconv::conv3x3::placeholder_input"),
            placeholder_output: buffer("gpuconv::conv3x3::placeholder_output"),
            placeholder_output4: buffer("gpuconv::conv3x3::placeholder_output4"),
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

impl Conv3x3Pipeline {
    /// The pipeline for `variant`, compiled on first use and kept; an error (and nothing kept)
    /// when the device reports one while compiling it, so a failed compilation is retried the
    /// next time rather than handed out.
    pub fn get(&self, device: &wgpu::Device, variant: &Variant) -> Result<wgpu::ComputePipeline> {
        let mut pipelines = self
            .pipelines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(pipeline) = pipelines.get(variant) {
            return Ok(pipeline.clone());
        }
        // On the web the scopes cannot be waited for here; errors reach the device's handler.
        #[cfg(not(target_arch = "wasm32"))]
        let scopes = [
            wgpu::ErrorFilter::Validation,
            wgpu::ErrorFilter::Internal,
            wgpu::ErrorFilter::OutOfMemory,
        ]
        .map(|filter| device.push_error_scope(filter));
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("gpuconv::conv3x3::pipeline"),
            layout: Some(&self.layout),
            module: &self.module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &variant.constants(),
                ..Default::default()
            },
            cache: cache.as_ref(),
        });
        // Scopes pop innermost first.
        #[cfg(not(target_arch = "wasm32"))]
        for scope in scopes.into_iter().rev() {
            if let Some(error) = pollster::block_on(scope.pop()) {
                return Err(Error::Gpu(format!(
                    "compiling the pipeline for {variant:?}: {error}"
                )));
            }
        }
        pipelines.insert(*variant, pipeline.clone());
        Ok(pipeline)
    }

    /// What the driver's pipeline cache holds now, to save and [load](Self::load_cache) in a
    /// later process; `None` where the device has no pipeline cache.
    pub fn cache_data(&self) -> Option<Vec<u8>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .and_then(wgpu::PipelineCache::get_data)
    }

    /// Compiles the pipelines from now on with a cache made from `data`; does nothing where
    /// the device has no pipeline cache.
    ///
    /// # Safety
    ///
    /// `data` must have come from [`cache_data`](Self::cache_data) (wgpu's
    /// `PipelineCache::get_data`); wgpu uses it only for an adapter with the same
    /// `wgpu::util::pipeline_cache_key`, and falls back to an empty cache when its header does
    /// not match.
    pub unsafe fn load_cache(&self, device: &wgpu::Device, data: &[u8]) {
        if !device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            return;
        }
        // SAFETY: the caller's promise above.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("gpuconv::conv3x3::pipeline_cache"),
                data: Some(data),
                fallback: true,
            })
        };
        *self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(cache);
    }

    /// How many pipelines have been compiled so far.
    pub fn compiled(&self) -> usize {
        self.pipelines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shaders_workgroup_size_is_the_one_dispatches_are_counted_in() {
        let declared = format!("const WORKGROUP_SIZE: u32 = {WORKGROUP_SIZE}u;");
        assert!(CONV3X3_WGSL.contains(&declared));
        assert!(super::super::yardstick::COPY_WGSL.contains(&declared));
    }
}
