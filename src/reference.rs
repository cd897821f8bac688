//! The lesson's loop, written plainly: the yardstick both backends are tested against.
//!
//! Nothing here is fast and nothing is shared with the backends beyond [`Kernel`], so a mistake
//! in the optimised code cannot hide in here too.

use image::GrayImage;

use crate::kernel::Kernel;
use crate::operation::{Border, Combine, FilterOutput, Operation, SumPlane, Sums};

/// 'valid' cross-correlation of `image` with `kernel`: for every 3×3 patch, the sum of the
/// patch times the kernel element-wise, then `clamp(|sum|, 0, 255)`.
///
/// Integer kernels are summed exactly (in `i64`); others in `f32`, taps in row-major order, and
/// rounded half to even. Returns an empty image for inputs smaller than 3×3.
pub fn convolve(image: &GrayImage, kernel: &Kernel) -> GrayImage {
    let (width, height) = image.dimensions();
    if width < 3 || height < 3 {
        return GrayImage::new(0, 0);
    }
    GrayImage::from_fn(width - 2, height - 2, |x, y| {
        image::Luma([window_response(kernel, |r, c| {
            image.get_pixel(x + c, y + r)[0]
        })])
    })
}

/// The kernel applied to one window, `patch(row, column)` giving its pixels: the sum of
/// weight × pixel, exact in `i64` for integer kernels, else in `f32` in row-major order and
/// rounded half to even; then `clamp(|sum|, 0, 255)`.
fn window_response(kernel: &Kernel, patch: impl Fn(u32, u32) -> u8) -> u8 {
    match window_sum(kernel, patch) {
        WindowSum::Integer(sum) => sum.abs().min(255) as u8,
        WindowSum::Float(sum) => sum.abs().round_ties_even().min(255.0) as u8,
    }
}

/// One window's sum, before `|sum|` and the clamp.
enum WindowSum {
    Integer(i64),
    Float(f32),
}

/// The sum of weight × pixel over one window: exact in `i64` for integer kernels, else in
/// `f32` in row-major order.
fn window_sum(kernel: &Kernel, patch: impl Fn(u32, u32) -> u8) -> WindowSum {
    if kernel.is_integer() {
        let mut sum = 0i64;
        for r in 0..3 {
            for c in 0..3 {
                sum += i64::from(patch(r, c)) * kernel.weights()[(r * 3 + c) as usize] as i64;
            }
        }
        WindowSum::Integer(sum)
    } else {
        let mut sum = 0f32;
        for r in 0..3 {
            for c in 0..3 {
                sum += f32::from(patch(r, c)) * kernel.weights()[(r * 3 + c) as usize];
            }
        }
        WindowSum::Float(sum)
    }
}

/// The lesson's edge image: `clamp(V + H, 0, 255)`.
pub fn edge(vertical: &GrayImage, horizontal: &GrayImage) -> GrayImage {
    combine(vertical, horizontal, |sum| sum.min(255) as u8)
}

/// The lesson's binary edge image: 255 where `V + H >= threshold`, else 0.
pub fn threshold(vertical: &GrayImage, horizontal: &GrayImage, threshold: u16) -> GrayImage {
    combine(vertical, horizontal, |sum| {
        if sum >= u32::from(threshold) { 255 } else { 0 }
    })
}

fn combine(vertical: &GrayImage, horizontal: &GrayImage, f: impl Fn(u32) -> u8) -> GrayImage {
    GrayImage::from_fn(vertical.width(), vertical.height(), |x, y| {
        image::Luma([f(
            u32::from(vertical.get_pixel(x, y)[0]) + u32::from(horizontal.get_pixel(x, y)[0])
        )])
    })
}

/// [`convolve`] with the windows reaching past the image's edges as `border` says: an output of
/// the image's own size, each pixel outside read where [`Border::source_index`] says (or 0).
/// [`Border::Valid`] is [`convolve`].
pub fn convolve_with_border(image: &GrayImage, kernel: &Kernel, border: Border) -> GrayImage {
    if border == Border::Valid {
        return convolve(image, kernel);
    }
    let (width, height) = image.dimensions();
    GrayImage::from_fn(width, height, |x, y| {
        image::Luma([window_response(kernel, bordered_patch(image, border, x, y))])
    })
}

/// The window whose top-left is output pixel (x, y) of a same-size border: pixel (r, c) of it
/// read where [`Border::source_index`] says, or 0.
fn bordered_patch(image: &GrayImage, border: Border, x: u32, y: u32) -> impl Fn(u32, u32) -> u8 {
    let (width, height) = image.dimensions();
    move |r: u32, c: u32| {
        let column = border.source_index(i64::from(x + c) - 1, width);
        let row = border.source_index(i64::from(y + r) - 1, height);
        match (column, row) {
            (Some(column), Some(row)) => image.get_pixel(column, row)[0],
            _ => 0,
        }
    }
}

/// The lesson's Keras model the plain way: `|V| + |H|` of the two kernels' sums over `image`
/// with `border`, unclipped, row-major, with the output's width and height. Whole-number
/// kernels only (it panics on a fractional one).
pub fn unclipped_edge(
    image: &GrayImage,
    vertical: &Kernel,
    horizontal: &Kernel,
    border: Border,
) -> (u32, u32, Vec<u64>) {
    let operation = Operation::sums(vec![vertical.clone(), horizontal.clone()])
        .expect("two kernels")
        .with_border(border);
    let sums = sums(image, &operation);
    let [SumPlane::Integer(v), SumPlane::Integer(h)] = &sums.planes[..] else {
        panic!("reference::unclipped_edge takes whole-number kernels");
    };
    let values = v
        .iter()
        .zip(h)
        .map(|(v, h)| u64::from(v.unsigned_abs()) + u64::from(h.unsigned_abs()))
        .collect();
    (sums.width, sums.height, values)
}

/// Each kernel's sums over `image`, unclipped, as [`Operation::sums`] asks: exact for integer
/// kernels (in `i64`, then narrowed: they fit `i32`), in `f32` in row-major order otherwise.
pub fn sums(image: &GrayImage, operation: &Operation) -> Sums {
    let (width, height) = image.dimensions();
    let (out_width, out_height) = operation.output_size(width, height).unwrap_or((0, 0));
    let window = |kernel: &Kernel, x: u32, y: u32| match operation.border() {
        Border::Valid => window_sum(kernel, |r, c| image.get_pixel(x + c, y + r)[0]),
        border => window_sum(kernel, bordered_patch(image, border, x, y)),
    };
    let planes = operation
        .kernels()
        .iter()
        .map(|kernel| {
            let mut integer = Vec::new();
            let mut float = Vec::new();
            for y in 0..out_height {
                for x in 0..out_width {
                    match window(kernel, x, y) {
                        WindowSum::Integer(sum) => integer.push(sum as i32),
                        WindowSum::Float(sum) => float.push(sum),
                    }
                }
            }
            if kernel.is_integer() {
                SumPlane::Integer(integer)
            } else {
                SumPlane::Float(float)
            }
        })
        .collect();
    Sums {
        width: out_width,
        height: out_height,
        planes,
    }
}

/// Everything `operation` asks for, computed the plain way.
pub fn run(image: &GrayImage, operation: &Operation) -> FilterOutput {
    let responses: Vec<GrayImage> = operation
        .kernels()
        .iter()
        .map(|k| convolve_with_border(image, k, operation.border()))
        .collect();
    let combined = match operation.combine() {
        Combine::None => None,
        Combine::Edge => Some(edge(&responses[0], &responses[1])),
        Combine::Threshold(t) => Some(threshold(&responses[0], &responses[1], t)),
    };
    FilterOutput {
        combined,
        responses: if operation.keeps_responses() {
            responses
        } else {
            Vec::new()
        },
    }
}
