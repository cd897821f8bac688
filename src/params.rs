//! The uniform block shared by the WGSL shader and its CPU twin.

use bytemuck::{Pod, Zeroable};

use crate::operation::{Combine, MAX_KERNELS, Operation};

/// `MODE_RESPONSES` in `shaders/conv3x3.wgsl`.
pub const MODE_RESPONSES: u32 = 0;
/// `MODE_EDGE` in `shaders/conv3x3.wgsl`.
pub const MODE_EDGE: u32 = 1;
/// `MODE_THRESHOLD` in `shaders/conv3x3.wgsl`.
pub const MODE_THRESHOLD: u32 = 2;

/// Must match `struct Params` in `shaders/conv3x3.wgsl` field for field (std140-compatible:
/// twelve `u32`s, then 16-byte-aligned `vec4<f32>` rows).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct Conv3x3Params {
    /// Input width in pixels.
    pub in_width: u32,
    /// Input height in pixels.
    pub in_height: u32,
    /// Bytes from one input row to the next.
    pub in_stride: u32,
    /// Byte offset of the first input pixel.
    pub in_offset: u32,
    /// Output width, `in_width - 2`.
    pub out_width: u32,
    /// Output height, `in_height - 2`.
    pub out_height: u32,
    /// Words (4 pixels each) from one output plane to the next: `ceil(out_width * out_height / 4)`.
    pub plane_words: u32,
    /// How many kernels are applied.
    pub kernel_count: u32,
    /// `MODE_RESPONSES`, `MODE_EDGE` or `MODE_THRESHOLD`.
    pub mode: u32,
    /// The threshold for `MODE_THRESHOLD`.
    pub threshold: u32,
    /// Non-zero when responses are written after a combined plane.
    pub write_responses: u32,
    /// Bit k set: kernel k has whole-number weights and is summed exactly in `i32`.
    pub integer_mask: u32,
    /// Kernel k's tap t (row-major) is `weights[k * 3 + t / 4][t % 4]`.
    pub weights: [[f32; 4]; 3 * MAX_KERNELS],
}

impl Conv3x3Params {
    /// Parameters for `operation` on a `width × height` image whose pixel (x, y) is at byte
    /// `offset + y * stride + x`. The image must be at least 3×3 (see
    /// [`output_size`](crate::operation::output_size)).
    pub fn new(operation: &Operation, width: u32, height: u32, stride: u32, offset: u32) -> Self {
        let (out_width, out_height) = (width - 2, height - 2);
        let mut weights = [[0f32; 4]; 3 * MAX_KERNELS];
        let mut integer_mask = 0;
        for (k, kernel) in operation.kernels().iter().enumerate() {
            for (tap, &w) in kernel.weights().iter().enumerate() {
                weights[k * 3 + tap / 4][tap % 4] = w;
            }
            integer_mask |= u32::from(kernel.is_integer()) << k;
        }
        let (mode, threshold) = match operation.combine() {
            Combine::None => (MODE_RESPONSES, 0),
            Combine::Edge => (MODE_EDGE, 0),
            Combine::Threshold(t) => (MODE_THRESHOLD, u32::from(t)),
        };
        let pixels = u64::from(out_width) * u64::from(out_height);
        Self {
            in_width: width,
            in_height: height,
            in_stride: stride,
            in_offset: offset,
            out_width,
            out_height,
            plane_words: pixels.div_ceil(4) as u32,
            kernel_count: operation.kernels().len() as u32,
            mode,
            threshold,
            write_responses: u32::from(
                operation.combine() != Combine::None && operation.keeps_responses(),
            ),
            integer_mask,
            weights,
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

    /// How many planes the shader writes: the combined one (if any), then the responses (if any).
    pub fn plane_count(&self) -> u32 {
        match self.mode {
            MODE_RESPONSES => self.kernel_count,
            _ if self.write_responses != 0 => 1 + self.kernel_count,
            _ => 1,
        }
    }

    /// Pixels in one output plane.
    pub fn plane_pixels(&self) -> usize {
        self.out_width as usize * self.out_height as usize
    }
}
