//! What an app embedding gpuconv has: its own device and queue, and the chores of making and
//! reading back its buffers and textures.

use gpuconv::gpu::device;
use wgpu::util::DeviceExt;

/// What an app has: its own device (default limits, no optional features) and queue.
pub struct App {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
}

impl App {
    /// `None` when there is no adapter (a failure under CI=true, through `common::gpu`).
    pub fn new() -> Option<Self> {
        Self::with_limits(wgpu::Limits::default())
    }

    /// An app's device with `limits`.
    pub fn with_limits(limits: wgpu::Limits) -> Option<Self> {
        Self::with(|_| limits)
    }

    /// An app's device with the adapter's own limits, some of them lowered by `lower`.
    pub fn with_adapter_limits(lower: impl FnOnce(&mut wgpu::Limits)) -> Option<Self> {
        Self::with(|adapter| {
            let mut limits = adapter.limits();
            lower(&mut limits);
            limits
        })
    }

    fn with(limits: impl FnOnce(&wgpu::Adapter) -> wgpu::Limits) -> Option<Self> {
        drop(super::gpu()?);
        let instance = device::instance_from_env();
        let adapter = pollster::block_on(device::select_adapter(&instance)).expect("adapter");
        let descriptor = wgpu::DeviceDescriptor {
            required_limits: limits(&adapter),
            ..Default::default()
        };
        let (device, queue) =
            pollster::block_on(adapter.request_device(&descriptor)).expect("device");
        Some(Self { device, queue })
    }

    pub fn buffer_with(&self, contents: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents,
                usage,
            })
    }

    pub fn texture(
        &self,
        width: u32,
        height: u32,
        layers: u32,
        format: wgpu::TextureFormat,
        usage: wgpu::TextureUsages,
    ) -> wgpu::Texture {
        self.device.create_texture(&wgpu::TextureDescriptor {
            label: None,
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: layers,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage,
            view_formats: &[],
        })
    }

    pub fn submit(&self, pass: &gpuconv::FilterPass) {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        pass.encode(&mut encoder);
        self.queue.submit([encoder.finish()]);
    }

    /// Every whole word of `buffer`, read back through a staging buffer.
    pub fn read_buffer(&self, buffer: &wgpu::Buffer) -> Vec<u8> {
        let size = buffer.size() & !3;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, |r| r.expect("mapped"));
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
        let bytes = staging.slice(..).get_mapped_range().unwrap().to_vec();
        staging.unmap();
        bytes
    }

    /// Layer `layer` of a texture with 4-byte texels, as rows of texels.
    pub fn read_texture(&self, texture: &wgpu::Texture, layer: u32) -> Vec<[u8; 4]> {
        let (width, height) = (texture.width(), texture.height());
        let bytes_per_row = (width * 4).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: u64::from(bytes_per_row * height),
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_texture_to_buffer(
            wgpu::TexelCopyTextureInfo {
                texture,
                mip_level: 0,
                origin: wgpu::Origin3d {
                    x: 0,
                    y: 0,
                    z: layer,
                },
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::TexelCopyBufferInfo {
                buffer: &buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(bytes_per_row),
                    rows_per_image: None,
                },
            },
            wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
        );
        self.queue.submit([encoder.finish()]);
        let bytes = self.read_buffer(&buffer);
        bytes
            .chunks(bytes_per_row as usize)
            .flat_map(|row| {
                row[..width as usize * 4]
                    .chunks(4)
                    .map(|t| [t[0], t[1], t[2], t[3]])
            })
            .collect()
    }
}
