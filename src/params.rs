//! The uniform block shared by the WGSL shader and its CPU twin.

use bytemuck::{Pod, Zeroable};

use crate::operation::{Border, Combine, MAX_KERNELS, Operation};

/// `MODE_RESPONSES` in `shaders/conv3x3.wgsl`.
pub const MODE_RESPONSES: u32 = 0;
/// `MODE_EDGE` in `shaders/conv3x3.wgsl`.
pub const MODE_EDGE: u32 = 1;
/// `MODE_THRESHOLD` in `shaders/conv3x3.wgsl`.
pub const MODE_THRESHOLD: u32 = 2;
/// `MODE_SUMS` in `shaders/conv3x3.wgsl`: each kernel's signed sum, unclipped, as a 32-bit word
/// a pixel (an `i32` for a whole-number kernel, the `f32` for a fractional one).
pub const MODE_SUMS: u32 = 3;

/// Bytes of one output pixel in `mode`: 4 for [`MODE_SUMS`], 1 for the others.
pub fn pixel_bytes(mode: u32) -> u32 {
    if mode == MODE_SUMS { 4 } else { 1 }
}

/// `SOURCE_BUFFER` in the shader: packed 8-bit pixels in a storage buffer.
pub const SOURCE_BUFFER: u32 = 0;
/// `SOURCE_TEXTURE_GRAY` in the shader: an `R8Unorm` texture.
pub const SOURCE_TEXTURE_GRAY: u32 = 1;
/// `SOURCE_TEXTURE_RGBA` in the shader: an `Rgba8Unorm` texture, made gray by luma.
pub const SOURCE_TEXTURE_RGBA: u32 = 2;
/// `SOURCE_TEXTURE_RGBA_SRGB` in the shader: an `Rgba8UnormSrgb` texture, made gray by the luma
/// of its stored (sRGB-encoded) bytes.
pub const SOURCE_TEXTURE_RGBA_SRGB: u32 = 3;

/// `BORDER_VALID` in the shader.
pub const BORDER_VALID: u32 = 0;
/// `BORDER_ZERO` in the shader.
pub const BORDER_ZERO: u32 = 1;
/// `BORDER_REPLICATE` in the shader.
pub const BORDER_REPLICATE: u32 = 2;
/// `BORDER_REFLECT` in the shader.
pub const BORDER_REFLECT: u32 = 3;

/// `TARGET_BUFFER` in the shader: packed 8-bit rows in a storage buffer.
pub const TARGET_BUFFER: u32 = 0;
/// `TARGET_TEXTURE_RGBA8` in the shader: an `Rgba8Unorm` storage texture array, gray in r, g, b.
pub const TARGET_TEXTURE_RGBA8: u32 = 1;
/// `TARGET_TEXTURE_R32UINT` in the shader: an `R32Uint` storage texture array, values 0 to 255.
pub const TARGET_TEXTURE_R32UINT: u32 = 2;

/// Where the input pixels are and how they are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceLayout {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from one row to the next (buffers only).
    pub bytes_per_row: u32,
    /// Byte offset of the first pixel within the bound range (buffers only).
    pub offset: u32,
    /// One of the `SOURCE_*` constants.
    pub kind: u32,
}

/// Where the output images go and how they are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetLayout {
    /// Bytes from one row to the next (buffers only; a multiple of 4 on the GPU).
    pub bytes_per_row: u32,
    /// Byte offset of the first image within the bound range (buffers only; a multiple of 4 on
    /// the GPU).
    pub offset: u32,
    /// Bytes from one image to the next (buffers only; a multiple of 4 on the GPU).
    pub bytes_per_image: u32,
    /// One of the `TARGET_*` constants.
    pub kind: u32,
}

impl SourceLayout {
    /// A tightly packed `width × height` image at the start of a buffer.
    pub fn packed(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            bytes_per_row: width,
            offset: 0,
            kind: SOURCE_BUFFER,
        }
    }

    /// A `width × height` image at the start of a buffer, each row starting on a 16-byte
    /// boundary, which lets the shader fetch 16 pixels (one `vec4<u32>`) at a time.
    pub fn vector_aligned_rows(width: u32, height: u32) -> Self {
        Self {
            bytes_per_row: width.next_multiple_of(VECTOR_BYTES),
            ..Self::packed(width, height)
        }
    }
}

impl TargetLayout {
    /// Output images of `out_height` rows of `row_bytes` bytes (the output width, times 4 for
    /// [`MODE_SUMS`]) in a buffer, each row starting on a 16-byte boundary, which lets the shader
    /// store a `vec4<u32>` at a time.
    pub fn vector_aligned_rows(row_bytes: u32, out_height: u32) -> Self {
        let bytes_per_row = row_bytes.next_multiple_of(VECTOR_BYTES);
        Self {
            bytes_per_row,
            offset: 0,
            bytes_per_image: bytes_per_row * out_height,
            kind: TARGET_BUFFER,
        }
    }
}

/// The most output rows one GPU invocation computes.
pub const MAX_ROWS_PER_INVOCATION: u32 = 8;

/// `COLUMNS` in the shader: neighbouring output pixels each GPU invocation computes in a row,
/// four packed words.
pub const COLUMNS_PER_INVOCATION: u32 = 16;

/// Bytes of the shader's widest load and store, one `vec4<u32>`: 16 pixels.
pub const VECTOR_BYTES: u32 = 16;

/// Must match `struct Params` in `shaders/conv3x3.wgsl` field for field: twenty `u32`s (80
/// bytes, so the `vec4` rows that follow start 16-byte aligned as uniform layout requires).
///
/// The shader reads only the sizes, strides, threshold and weights from here: the shape of the
/// work (`kernel_count` to `border`) is compiled into its pipeline as overridable constants
/// (`Variant` in `gpu/pipeline.rs`, derived from these fields), while the CPU twin reads it here.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct Conv3x3Params {
    /// Input width in pixels.
    pub in_width: u32,
    /// Input height in pixels.
    pub in_height: u32,
    /// Bytes from one input row to the next.
    pub in_bytes_per_row: u32,
    /// Byte offset of the first input pixel.
    pub in_offset: u32,
    /// Output width: `in_width - 2` for the valid border, `in_width` for the others.
    pub out_width: u32,
    /// Output height: `in_height - 2` for the valid border, `in_height` for the others.
    pub out_height: u32,
    /// Bytes from one output row to the next.
    pub out_bytes_per_row: u32,
    /// Byte offset of the first output image.
    pub out_offset: u32,
    /// Bytes from one output image to the next.
    pub bytes_per_image: u32,
    /// Invocations per output row: each computes [`COLUMNS_PER_INVOCATION`] neighbouring
    /// pixels, `ceil(out_width / 16)`.
    pub groups_per_row: u32,
    /// The threshold for `MODE_THRESHOLD`.
    pub threshold: u32,
    /// How many kernels are applied.
    pub kernel_count: u32,
    /// `MODE_RESPONSES`, `MODE_EDGE`, `MODE_THRESHOLD` or `MODE_SUMS`.
    pub mode: u32,
    /// Non-zero when responses are written after a combined image.
    pub write_responses: u32,
    /// Bit k set: kernel k has whole-number weights and is summed exactly in `i32`.
    pub integer_mask: u32,
    /// One of the `SOURCE_*` constants.
    pub source_kind: u32,
    /// One of the `TARGET_*` constants.
    pub target_kind: u32,
    /// Output rows each GPU invocation computes, 1 to `MAX_ROWS_PER_INVOCATION`: how the
    /// shader shares its input fetches, never what it computes (the CPU twin ignores it).
    pub rows_per_invocation: u32,
    /// One of the `BORDER_*` constants. The CPU twin filters 'valid' only: the backends pad
    /// images on the host, and only passes over GPU resources let the shader read past edges.
    pub border: u32,
    /// Padding to the 16-byte boundary of `weights`.
    pub _padding: [u32; 1],
    /// Kernel k's tap t (row-major) is `weights[k * 3 + t / 4][t % 4]`.
    pub weights: [[f32; 4]; 3 * MAX_KERNELS],
    /// The same taps as `i32` for the integer kernels (zero for the others), so that the
    /// shader converts none per pixel.
    pub integer_weights: [[i32; 4]; 3 * MAX_KERNELS],
}

impl Conv3x3Params {
    /// Parameters for `operation` from `source` into `target`. The source must be at least 3×3
    /// for the valid border (see [`Operation::output_size`]), 1×1 for the others.
    pub fn new(operation: &Operation, source: SourceLayout, target: TargetLayout) -> Self {
        let (out_width, out_height) = match operation.border() {
            Border::Valid => (source.width - 2, source.height - 2),
            _ => (source.width, source.height),
        };
        let mut weights = [[0f32; 4]; 3 * MAX_KERNELS];
        let mut integer_weights = [[0i32; 4]; 3 * MAX_KERNELS];
        let mut integer_mask = 0;
        for (k, kernel) in operation.kernels().iter().enumerate() {
            for (tap, &w) in kernel.weights().iter().enumerate() {
                weights[k * 3 + tap / 4][tap % 4] = w;
                if kernel.is_integer() {
                    integer_weights[k * 3 + tap / 4][tap % 4] = w as i32;
                }
            }
            integer_mask |= u32::from(kernel.is_integer()) << k;
        }
        let (mode, threshold) = match operation.combine() {
            Combine::None if operation.is_sums() => (MODE_SUMS, 0),
            Combine::None => (MODE_RESPONSES, 0),
            Combine::Edge => (MODE_EDGE, 0),
            Combine::Threshold(t) => (MODE_THRESHOLD, u32::from(t)),
        };
        Self {
            in_width: source.width,
            in_height: source.height,
            in_bytes_per_row: source.bytes_per_row,
            in_offset: source.offset,
            out_width,
            out_height,
            out_bytes_per_row: target.bytes_per_row,
            out_offset: target.offset,
            bytes_per_image: target.bytes_per_image,
            groups_per_row: out_width.div_ceil(COLUMNS_PER_INVOCATION),
            kernel_count: operation.kernels().len() as u32,
            mode,
            threshold,
            write_responses: u32::from(
                operation.combine() != Combine::None && operation.keeps_responses(),
            ),
            integer_mask,
            source_kind: source.kind,
            target_kind: target.kind,
            rows_per_invocation: 1,
            border: match operation.border() {
                Border::Valid => BORDER_VALID,
                Border::Zero => BORDER_ZERO,
                Border::Replicate => BORDER_REPLICATE,
                Border::Reflect => BORDER_REFLECT,
            },
            _padding: [0; 1],
            weights,
            integer_weights,
        }
    }

    /// Kernel `k`'s tap `tap`, as `weight()` in the shader reads it.
    pub fn weight(&self, k: usize, tap: usize) -> f32 {
        self.weights[k * 3 + tap / 4][tap % 4]
    }

    /// Whether kernel `k` is summed in integers.
    pub fn is_integer(&self, k: usize) -> bool {
        self.integer_mask & (1 << k) != 0
    }

    /// How many images the shader writes: the combined one (if any), then the responses (if any).
    pub fn output_count(&self) -> u32 {
        match self.mode {
            MODE_RESPONSES | MODE_SUMS => self.kernel_count,
            _ if self.write_responses != 0 => 1 + self.kernel_count,
            _ => 1,
        }
    }

    /// These parameters with each GPU invocation computing `rows` output rows (clamped to 1 to
    /// [`MAX_ROWS_PER_INVOCATION`]).
    pub fn with_rows_per_invocation(self, rows: u32) -> Self {
        Self {
            rows_per_invocation: rows.clamp(1, MAX_ROWS_PER_INVOCATION),
            ..self
        }
    }

    /// Invocations the shader needs: one per [`COLUMNS_PER_INVOCATION`] output pixels of
    /// `rows_per_invocation` rows.
    pub fn invocations(&self) -> u32 {
        self.groups_per_row * self.out_height.div_ceil(self.rows_per_invocation)
    }

    /// Bytes of the bound input range the shader reads: up to the last pixel of the last row,
    /// rounded up to whole words (buffer sources).
    pub fn input_bytes(&self) -> u64 {
        let last_row = u64::from(self.in_offset)
            + u64::from(self.in_bytes_per_row) * u64::from(self.in_height - 1);
        (last_row + u64::from(self.in_width)).next_multiple_of(4)
    }

    /// Bytes of the bound output range the shader writes: up to the last word of the last row
    /// of the last image (buffer targets).
    pub fn output_bytes(&self) -> u64 {
        let last_image = u64::from(self.out_offset)
            + u64::from(self.bytes_per_image) * u64::from(self.output_count() - 1);
        let last_row =
            last_image + u64::from(self.out_bytes_per_row) * u64::from(self.out_height - 1);
        (last_row + u64::from(self.out_row_bytes())).next_multiple_of(4)
    }

    /// Bytes of one output row's pixels (the width, times 4 for [`MODE_SUMS`]), padding aside.
    pub fn out_row_bytes(&self) -> u32 {
        self.out_width * pixel_bytes(self.mode)
    }
}
