//! The lesson's last example as an image: a Keras `Conv2D` whose two filters are the line
//! kernels, 'valid', no bias, then `|V| + |H|` without clipping, written as 16-bit pixels.

use image::{ImageBuffer, Luma};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::operation::{Combine, GrayView, Operation, SumPlane};

/// A 16-bit gray image, row-major.
pub type Gray16Image = ImageBuffer<Luma<u16>, Vec<u16>>;

/// Bytes one pixel of the image costs while [`unclipped_edge`] makes it: its two `i32` sums
/// and its 16-bit pixel (the input aside).
pub const UNCLIPPED_EDGE_BYTES_PER_PIXEL: u64 = 4 + 4 + 2;

/// The largest `|V| + |H|` two whole-number kernels give on 8-bit pixels:
/// `255 · (Σ|v| + Σ|h|)`. `None` when a kernel has a fractional weight.
pub fn unclipped_edge_bound(vertical: &Kernel, horizontal: &Kernel) -> Option<u64> {
    let magnitude = |k: &Kernel| -> u64 { k.weights().iter().map(|w| w.abs() as u64).sum() };
    (vertical.is_integer() && horizontal.is_integer())
        .then(|| 255 * (magnitude(vertical) + magnitude(horizontal)))
}

/// `|V| + |H|` of an edge `operation`'s two kernels over `image`, unclipped, with the
/// operation's border: the lesson's Keras model, whose output a 16-bit image holds exactly when
/// [`check_unclipped_edge`] passes, which is checked first.
pub fn unclipped_edge(
    engine: &mut Engine,
    image: &GrayView<'_>,
    operation: &Operation,
) -> Result<Gray16Image> {
    check_unclipped_edge(operation)?;
    let sums = Operation::sums(operation.kernels().to_vec())?.with_border(operation.border());
    let sums = engine.run_sums(image, &sums)?;
    let [SumPlane::Integer(v), SumPlane::Integer(h)] = &sums.planes[..] else {
        unreachable!("whole-number kernels give i32 sums");
    };
    let mut pixels: Vec<u16> = crate::memory::zeroed(v.len(), "an unclipped edge image")?;
    for ((pixel, v), h) in pixels.iter_mut().zip(v).zip(h) {
        // At most the bound, checked to fit.
        *pixel = (v.unsigned_abs() + h.unsigned_abs()) as u16;
    }
    Ok(Gray16Image::from_raw(sums.width, sums.height, pixels).expect("width × height pixels"))
}

/// Whether [`unclipped_edge`] can write `operation`'s output as 16 bits: an edge operation of
/// two kernels with whole-number weights whose [`unclipped_edge_bound`] is at most 65535. An
/// [`Error::InvalidOperation`] says which condition fails; a caller can ask before reading an
/// image.
pub fn check_unclipped_edge(operation: &Operation) -> Result<()> {
    let [vertical, horizontal] = operation.kernels() else {
        return Err(Error::InvalidOperation(
            "the unclipped edge image combines exactly 2 kernels (V and H)".into(),
        ));
    };
    if operation.combine() != Combine::Edge {
        return Err(Error::InvalidOperation(
            "the unclipped edge image is |V| + |H| of an edge operation".into(),
        ));
    }
    let Some(bound) = unclipped_edge_bound(vertical, horizontal) else {
        let fractional = [vertical, horizontal]
            .into_iter()
            .find(|k| !k.is_integer())
            .map_or("", Kernel::name);
        return Err(Error::InvalidOperation(format!(
            "the unclipped edge image is written as 16-bit whole numbers, so its kernels need \
             whole-number weights, and '{fractional}' has fractions"
        )));
    };
    if bound > u64::from(u16::MAX) {
        return Err(Error::InvalidOperation(format!(
            "the unclipped edge image of '{}' and '{}' can reach {bound}, more than a 16-bit \
             image holds (65535)",
            vertical.name(),
            horizontal.name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::BackendChoice;
    use crate::operation::{Border, view};

    #[test]
    fn the_unclipped_edge_image_is_the_sum_of_absolute_sums() {
        // An image with every pixel different, its edges far past 255.
        let image = image::GrayImage::from_fn(23, 17, |x, y| {
            image::Luma([((x * 37 + y * 101 + x * y * 13) % 256) as u8])
        });
        let mut engine = Engine::new(BackendChoice::Cpu).unwrap();
        for border in Border::ALL {
            let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines())
                .with_border(border);
            let edges = unclipped_edge(&mut engine, &view(&image), &operation).unwrap();
            let (width, height, expected) = crate::reference::unclipped_edge(
                &image,
                &Kernel::vertical_lines(),
                &Kernel::horizontal_lines(),
                border,
            );
            let expected: Vec<u16> = expected.iter().map(|&e| e as u16).collect();
            assert_eq!(edges.dimensions(), (width, height), "{border:?}");
            assert_eq!(edges.as_raw(), &expected, "{border:?}");
            assert!(
                expected.iter().any(|&e| e > 255),
                "the test reaches past 8 bits"
            );
        }
    }

    #[test]
    fn kernels_beyond_16_bits_or_with_fractions_are_refused_before_any_work() {
        let image = image::GrayImage::new(5, 5);
        let mut engine = Engine::new(BackendChoice::Cpu).unwrap();
        let big = Kernel::parse("big=300,0,-300;0,0,0;0,0,0", "k").unwrap();
        let error = unclipped_edge(
            &mut engine,
            &view(&image),
            &Operation::edge(big, Kernel::horizontal_lines()),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid operation: the unclipped edge image of 'big' and 'horizontal' can reach \
             155040, more than a 16-bit image holds (65535)"
        );
        let blur = Kernel::named("box-blur").unwrap();
        let error = unclipped_edge(
            &mut engine,
            &view(&image),
            &Operation::edge(Kernel::vertical_lines(), blur),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("'box-blur' has fractions"),
            "{error}"
        );
    }
}
