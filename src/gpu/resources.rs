//! The caller's buffers and textures as a pass's source and target, checked up front so that a
//! mistake is an [`Error::InvalidResource`] and never a wgpu validation panic.

use crate::error::{Error, Result};
use crate::operation::{Border, Operation};
use crate::params::{
    SOURCE_BUFFER, SOURCE_TEXTURE_GRAY, SOURCE_TEXTURE_RGBA, SOURCE_TEXTURE_RGBA_SRGB,
    SourceLayout, TARGET_BUFFER, TARGET_TEXTURE_R32UINT, TARGET_TEXTURE_RGBA8, TargetLayout,
};

/// Where a pass reads its image.
#[derive(Clone, Copy, Debug)]
pub enum GpuSource<'a> {
    /// 8-bit gray pixels in a buffer: pixel (x, y) is byte `offset + y * bytes_per_row + x`.
    /// Any offset and row stride work. The buffer needs `BufferUsages::STORAGE` and must reach
    /// to the end of the 4-byte word holding the last pixel.
    Buffer {
        /// The buffer.
        buffer: &'a wgpu::Buffer,
        /// Byte offset of pixel (0, 0).
        offset: u64,
        /// Bytes from one row to the next, at least `width`.
        bytes_per_row: u32,
        /// Width in pixels, at least 3.
        width: u32,
        /// Height in pixels, at least 3.
        height: u32,
    },
    /// Mip level 0, layer 0 of a 2D texture with `TextureUsages::TEXTURE_BINDING`: `R8Unorm` is
    /// gray as it is; `Rgba8Unorm` and `Rgba8UnormSrgb` become gray by the same luma rule as
    /// files do, applied to the bytes stored in the texture (sRGB-encoded ones for the `Srgb`
    /// format, not the linear values sampling returns).
    Texture(&'a wgpu::Texture),
}

/// Where a pass writes its images: the combined image first, if any, then one per kernel if
/// responses are kept. Each image is (W−2)×(H−2) for a W×H source.
#[derive(Clone, Copy, Debug)]
pub enum GpuTarget<'a> {
    /// 8-bit gray pixels in a buffer: pixel (x, y) of image i is byte
    /// `offset + i * bytes_per_image + y * bytes_per_row + x`. The three must be multiples of 4
    /// (the shader writes whole words); bytes between rows and images are left as they were. The
    /// buffer needs `BufferUsages::STORAGE`.
    Buffer {
        /// The buffer.
        buffer: &'a wgpu::Buffer,
        /// Byte offset of pixel (0, 0) of the first image; a multiple of 4.
        offset: u64,
        /// Bytes from one row to the next: at least the output width, a multiple of 4.
        bytes_per_row: u32,
        /// Bytes from one image to the next, a multiple of 4 (ignored for one image).
        bytes_per_image: u64,
    },
    /// A 2D storage texture (`TextureUsages::STORAGE_BINDING`) exactly the output's size, with
    /// one array layer per output image, mip level 0: `Rgba8Unorm` receives gray in r, g and b
    /// with alpha 1; `R32Uint` receives the values 0 to 255 in r.
    Texture(&'a wgpu::Texture),
}

/// A source or target checked and ready to bind: the part of a buffer the shader may touch, or
/// a view of a texture.
pub(crate) enum Binding {
    Buffer {
        buffer: wgpu::Buffer,
        offset: u64,
        size: u64,
    },
    Texture(wgpu::TextureView),
}

impl Binding {
    /// Bytes of the bound buffer range; 0 for a texture.
    pub fn size(&self) -> u64 {
        match self {
            Binding::Buffer { size, .. } => *size,
            Binding::Texture(_) => 0,
        }
    }
}

fn invalid(what: &'static str, problem: impl Into<String>) -> Error {
    Error::InvalidResource {
        what,
        problem: problem.into(),
    }
}

/// The part of a buffer to bind so that bytes `first..end` are inside it: the whole buffer
/// (less a trailing partial word, which storage bindings cannot have) when it is small enough,
/// else a range starting on the device's storage offset alignment. Returns the binding's offset
/// and size, and where `first` lands inside the binding.
fn buffer_range(
    what: &'static str,
    buffer: &wgpu::Buffer,
    first: u64,
    end: Option<u64>,
    limits: &wgpu::Limits,
) -> Result<(u64, u64, u32)> {
    let too_far = || invalid(what, "offset and sizes reach past 2^64 bytes");
    let end = end
        .and_then(|end| end.checked_next_multiple_of(4))
        .ok_or_else(too_far)?;
    let whole_words = buffer.size() & !3;
    if end > whole_words {
        return Err(invalid(
            what,
            format!(
                "needs at least {end} bytes (the shader works in whole 4-byte words), the buffer has {}",
                buffer.size()
            ),
        ));
    }
    let limit = limits
        .max_storage_buffer_binding_size
        .min(u64::from(u32::MAX))
        & !3;
    let (start, size) = if whole_words <= limit {
        (0, whole_words)
    } else {
        let start = first - first % u64::from(limits.min_storage_buffer_offset_alignment);
        (start, end - start)
    };
    if size > limit {
        return Err(invalid(
            what,
            format!(
                "the image spans {size} bytes, more than the device's max_storage_buffer_binding_size {limit}"
            ),
        ));
    }
    let inside = u32::try_from(first - start).map_err(|_| too_far())?;
    Ok((start, size, inside))
}

fn require_buffer_usage(what: &'static str, buffer: &wgpu::Buffer) -> Result<()> {
    if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
        return Err(invalid(
            what,
            "needs BufferUsages::STORAGE; add it where the buffer is created",
        ));
    }
    Ok(())
}

fn require_2d(what: &'static str, texture: &wgpu::Texture) -> Result<()> {
    if texture.dimension() != wgpu::TextureDimension::D2 || texture.sample_count() != 1 {
        return Err(invalid(
            what,
            "must be a 2D texture with one sample per pixel",
        ));
    }
    Ok(())
}

impl GpuSource<'_> {
    /// Checks the source and describes it for the shader.
    pub(crate) fn bind(
        &self,
        border: Border,
        limits: &wgpu::Limits,
    ) -> Result<(SourceLayout, Binding)> {
        // The valid border needs whole 3×3 windows; the others any image.
        let smallest = if border == Border::Valid { 3 } else { 1 };
        match *self {
            GpuSource::Buffer {
                buffer,
                offset,
                bytes_per_row,
                width,
                height,
            } => {
                const WHAT: &str = "source buffer";
                require_buffer_usage(WHAT, buffer)?;
                if width < smallest || height < smallest {
                    return Err(Error::ImageTooSmall { width, height });
                }
                if bytes_per_row < width {
                    return Err(invalid(
                        WHAT,
                        format!("bytes_per_row {bytes_per_row} is less than the width {width}"),
                    ));
                }
                let end = (u64::from(bytes_per_row) * u64::from(height - 1) + u64::from(width))
                    .checked_add(offset);
                let (start, size, offset) = buffer_range(WHAT, buffer, offset, end, limits)?;
                let layout = SourceLayout {
                    width,
                    height,
                    bytes_per_row,
                    offset,
                    kind: SOURCE_BUFFER,
                };
                Ok((
                    layout,
                    Binding::Buffer {
                        buffer: buffer.clone(),
                        offset: start,
                        size,
                    },
                ))
            }
            GpuSource::Texture(texture) => {
                const WHAT: &str = "source texture";
                let kind = match texture.format() {
                    wgpu::TextureFormat::R8Unorm => SOURCE_TEXTURE_GRAY,
                    wgpu::TextureFormat::Rgba8Unorm => SOURCE_TEXTURE_RGBA,
                    wgpu::TextureFormat::Rgba8UnormSrgb => SOURCE_TEXTURE_RGBA_SRGB,
                    other => {
                        return Err(invalid(
                            WHAT,
                            format!(
                                "format {other:?} is not one of R8Unorm, Rgba8Unorm, Rgba8UnormSrgb"
                            ),
                        ));
                    }
                };
                if !texture
                    .usage()
                    .contains(wgpu::TextureUsages::TEXTURE_BINDING)
                {
                    return Err(invalid(
                        WHAT,
                        "needs TextureUsages::TEXTURE_BINDING; add it where the texture is created",
                    ));
                }
                require_2d(WHAT, texture)?;
                let (width, height) = (texture.width(), texture.height());
                if width < smallest || height < smallest {
                    return Err(Error::ImageTooSmall { width, height });
                }
                let view = texture.create_view(&wgpu::TextureViewDescriptor {
                    label: Some("gpuconv::conv3x3::source_view"),
                    dimension: Some(wgpu::TextureViewDimension::D2),
                    base_mip_level: 0,
                    mip_level_count: Some(1),
                    base_array_layer: 0,
                    array_layer_count: Some(1),
                    ..Default::default()
                });
                let layout = SourceLayout {
                    width,
                    height,
                    bytes_per_row: 0,
                    offset: 0,
                    kind,
                };
                Ok((layout, Binding::Texture(view)))
            }
        }
    }
}

impl GpuTarget<'_> {
    /// Checks the target for `operation`'s output images of `out_width × out_height` and
    /// describes it for the shader.
    pub(crate) fn bind(
        &self,
        operation: &Operation,
        out_width: u32,
        out_height: u32,
        limits: &wgpu::Limits,
    ) -> Result<(TargetLayout, Binding)> {
        let images = operation.output_count();
        // The bytes of one output row's pixels: 4 a pixel for unclipped sums.
        let row_bytes = out_width * operation.output_pixel_bytes();
        match *self {
            GpuTarget::Buffer {
                buffer,
                offset,
                bytes_per_row,
                bytes_per_image,
            } => {
                const WHAT: &str = "target buffer";
                require_buffer_usage(WHAT, buffer)?;
                let bytes_per_image = if images == 1 { 0 } else { bytes_per_image };
                if offset % 4 != 0 || bytes_per_row % 4 != 0 || bytes_per_image % 4 != 0 {
                    return Err(invalid(
                        WHAT,
                        format!(
                            "offset {offset}, bytes_per_row {bytes_per_row} and bytes_per_image {bytes_per_image} must be multiples of 4"
                        ),
                    ));
                }
                if bytes_per_row < row_bytes {
                    return Err(invalid(
                        WHAT,
                        format!(
                            "bytes_per_row {bytes_per_row} is less than an output row's {row_bytes} bytes"
                        ),
                    ));
                }
                let image_bytes =
                    u64::from(bytes_per_row) * u64::from(out_height - 1) + u64::from(row_bytes);
                if images > 1 && bytes_per_image < image_bytes {
                    return Err(invalid(
                        WHAT,
                        format!(
                            "bytes_per_image {bytes_per_image} is less than one image's {image_bytes} bytes"
                        ),
                    ));
                }
                let end = bytes_per_image
                    .checked_mul(u64::from(images - 1))
                    .and_then(|images| images.checked_add(image_bytes)?.checked_add(offset));
                let (start, size, offset) = buffer_range(WHAT, buffer, offset, end, limits)?;
                let bytes_per_image = u32::try_from(bytes_per_image)
                    .map_err(|_| invalid(WHAT, "bytes_per_image must be below 4 GiB"))?;
                let layout = TargetLayout {
                    bytes_per_row,
                    offset,
                    bytes_per_image,
                    kind: TARGET_BUFFER,
                };
                Ok((
                    layout,
                    Binding::Buffer {
                        buffer: buffer.clone(),
                        offset: start,
                        size,
                    },
                ))
            }
            GpuTarget::Texture(texture) => {
                const WHAT: &str = "target texture";
                if operation.is_sums() {
                    return Err(invalid(
                        WHAT,
                        "unclipped sums are 32-bit words: write them to a buffer",
                    ));
                }
                let kind = match texture.format() {
                    wgpu::TextureFormat::Rgba8Unorm => TARGET_TEXTURE_RGBA8,
                    wgpu::TextureFormat::R32Uint => TARGET_TEXTURE_R32UINT,
                    other => {
                        return Err(invalid(
                            WHAT,
                            format!("format {other:?} is not one of Rgba8Unorm, R32Uint"),
                        ));
                    }
                };
                if !texture
                    .usage()
                    .contains(wgpu::TextureUsages::STORAGE_BINDING)
                {
                    return Err(invalid(
                        WHAT,
                        "needs TextureUsages::STORAGE_BINDING; add it where the texture is created",
                    ));
                }
                require_2d(WHAT, texture)?;
                if (texture.width(), texture.height()) != (out_width, out_height) {
                    return Err(invalid(
                        WHAT,
                        format!(
                            "is {}×{}, but the output is {out_width}×{out_height} (two pixels smaller than the source each way with the valid border, its size with the others)",
                            texture.width(),
                            texture.height()
                        ),
                    ));
                }
                if texture.depth_or_array_layers() < images {
                    return Err(invalid(
                        WHAT,
                        format!(
                            "has {} array layers, {images} are needed (one per output image)",
                            texture.depth_or_array_layers()
                        ),
                    ));
                }
                let view = texture.create_view(&wgpu::TextureViewDescriptor {
                    label: Some("gpuconv::conv3x3::target_view"),
                    dimension: Some(wgpu::TextureViewDimension::D2Array),
                    base_mip_level: 0,
                    mip_level_count: Some(1),
                    base_array_layer: 0,
                    array_layer_count: Some(images),
                    ..Default::default()
                });
                let layout = TargetLayout {
                    bytes_per_row: 0,
                    offset: 0,
                    bytes_per_image: 0,
                    kind,
                };
                Ok((layout, Binding::Texture(view)))
            }
        }
    }
}

/// Refuses a source and target that are the same resource: one pass cannot read and write it.
pub(crate) fn check_distinct(source: &GpuSource<'_>, target: &GpuTarget<'_>) -> Result<()> {
    let same = match (source, target) {
        (GpuSource::Buffer { buffer: a, .. }, GpuTarget::Buffer { buffer: b, .. }) => a == b,
        (GpuSource::Texture(a), GpuTarget::Texture(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(invalid(
            "target",
            "is the source: one pass cannot read and write the same buffer or texture, even in \
             separate ranges (wgpu tracks usage per resource); use two",
        ));
    }
    Ok(())
}
