//! An image and its kernels' unclipped responses as one NumPy `.npz` archive: what the
//! service answers for `responses=true`, from which a client derives every clipped image of
//! the lesson (each response, the edge image, the binary one at any threshold) exactly.

use std::sync::Arc;
use std::time::Instant;

use super::image::{Borrowed, read_whole};
use super::{Destination, Filtered, Settings, SharedEngine, Source};
use crate::error::{Error, Result};
use crate::io::{Dtype, NpyArray, Npz, ReadLimits};
use crate::operation::{Border, Operation};
use crate::timings::Timings;

/// The number type of an archive's `responses` for `operation`'s kernels: `int32` when every
/// kernel has whole-number weights (exact), `float32` when every one has fractions (as the
/// engines compute them), `float64` for a mix (both exactly).
pub fn responses_dtype(operation: &Operation) -> Dtype {
    let kernels = operation.kernels();
    if kernels.iter().all(|k| k.is_integer()) {
        Dtype::I32
    } else if kernels.iter().all(|k| !k.is_integer()) {
        Dtype::F32
    } else {
        Dtype::F64
    }
}

/// The arrays of a responses archive for a `width × height` image: `image` (uint8, H×W, the
/// gray pixels filtered), `kernels` (float64, K×3×3, the weights applied) and `responses`
/// (K×H'×W', [`responses_dtype`]: each kernel's signed sum at each output pixel, H'×W' the
/// operation's output size).
fn arrays(operation: &Operation, width: u32, height: u32) -> Result<[NpyArray; 3]> {
    let (out_width, out_height) = operation.output_size(width, height)?;
    let k = operation.kernels().len();
    Ok([
        NpyArray {
            name: "image",
            dtype: Dtype::U8,
            shape: vec![height as usize, width as usize],
        },
        NpyArray {
            name: "kernels",
            dtype: Dtype::F64,
            shape: vec![k, 3, 3],
        },
        NpyArray {
            name: "responses",
            dtype: responses_dtype(operation),
            shape: vec![k, out_height as usize, out_width as usize],
        },
    ])
}

/// Filters the image `source` holds with `settings.operation`, an [`Operation::sums`], into
/// one `.npz` archive ([`Destination::Encoded`] or [`Destination::Streamed`] as `npz`; it is
/// made whole either way): arrays `image`, `kernels` and `responses`, described in the README
/// ("The service"). The archive is laid out before filtering and the sums are written straight
/// into it, so the image, its padded copy for a border, and the archive are all it holds,
/// counted in the memory budget: roughly from the header, before decoding, then exactly before
/// the archive is allocated.
pub fn responses_npz(
    engine: &Arc<SharedEngine>,
    source: &Source,
    destination: &Destination,
    settings: &Settings<'_>,
) -> Result<Filtered> {
    let operation = settings.operation;
    match destination {
        Destination::Encoded(extension) | Destination::Streamed { extension, .. }
            if extension == "npz" => {}
        _ => {
            return Err(Error::InvalidOperation(
                "unclipped sums are answered as an .npz archive only".into(),
            ));
        }
    }
    let dtype = responses_dtype(operation);
    // Per input pixel, roughly: its copy in the archive, each kernel's sum, and a border's
    // padded copy; a first refusal from the header alone. The exact count follows decoding.
    let limits = ReadLimits {
        output_images: 1
            + operation.kernels().len() as u64 * dtype.bytes() as u64
            + u64::from(operation.border() != Border::Valid),
        encoded_images: 0,
        ..settings.limits
    };
    let started = Instant::now();
    let image = read_whole(source, settings, &limits)?;
    let decode = started.elapsed();
    let (width, height) = image.dimensions();
    let arrays = arrays(operation, width, height)?;
    let output_size = (arrays[2].shape[2] as u32, arrays[2].shape[1] as u32);
    // What is held from here: the image, the archive, a border's padded copy. Counted exactly,
    // since the archive can be many times the image (a narrow image with a border and eight
    // kernels: 65 bytes a pixel), before it is allocated.
    let pixels = u64::from(width) * u64::from(height);
    let padded = match operation.border() {
        Border::Valid => 0,
        _ => (u64::from(width) + 2) * (u64::from(height) + 2),
    };
    let needed = pixels + Npz::size(&arrays)? as u64 + padded;
    if needed > limits.max_memory {
        return Err(Error::OverBudget {
            path: match source {
                Source::File(path) => path.clone(),
                Source::Bytes { name, .. } => name.into(),
            },
            width,
            height,
            what: format!(
                "8-bit gray, and {} unclipped sums a pixel of {} bytes each",
                operation.kernels().len(),
                dtype.bytes()
            ),
            needed,
            budget: limits.max_memory,
        });
    }
    settings.observer.started(output_size, false);
    let mut archive = Npz::new(&arrays)?;
    let mut values = archive.values_mut();
    let [pixels, weights, responses] = &mut values[..] else {
        unreachable!("three arrays");
    };
    pixels.copy_from_slice(image.as_raw());
    for (into, weight) in weights
        .chunks_exact_mut(8)
        .zip(operation.kernels().iter().flat_map(|k| k.weights()))
    {
        into.copy_from_slice(&f64::from(*weight).to_ne_bytes());
    }
    // Each kernel's plane; a mix's planes are written as 4-byte sums into the first half of
    // their place, then widened.
    let plane = responses.len() / operation.kernels().len();
    let written = if dtype == Dtype::F64 {
        plane / 2
    } else {
        plane
    };
    let mut planes: Vec<&mut [u8]> = responses
        .chunks_exact_mut(plane)
        .map(|p| &mut p[..written])
        .collect();
    let mut borrowed = Borrowed::new(engine, settings, (width, height));
    let filtering = Instant::now();
    let view = crate::operation::view(&image);
    borrowed.run(&image, operation, |engine| {
        engine.run_view_into(&view, operation, &mut planes)
    })?;
    let compute = filtering.elapsed();
    drop(planes);
    if dtype == Dtype::F64 {
        for (plane, kernel) in responses.chunks_exact_mut(plane).zip(operation.kernels()) {
            widen(plane, kernel.is_integer());
        }
    }
    drop(values);
    let encoding = Instant::now();
    let bytes = archive.finish();
    settings.observer.rows_written(output_size.1);
    Ok(Filtered {
        input_size: (width, height),
        output_size,
        encoded: vec![bytes],
        streamed: false,
        backend: borrowed.backend.unwrap_or("cpu"),
        timings: Timings {
            decode: Some(decode),
            compute: Some(compute),
            encode: Some(encoding.elapsed()),
            ..Timings::default()
        },
    })
}

/// Turns the 4-byte sums in the first half of `plane` (`i32` for a whole-number kernel, else
/// `f32`) into `f64`s filling it, in place: from the last, whose 8 bytes cover only sums
/// already read.
fn widen(plane: &mut [u8], integer: bool) {
    let n = plane.len() / 8;
    for i in (0..n).rev() {
        let four: [u8; 4] = plane[4 * i..4 * i + 4].try_into().expect("4 bytes");
        let value = if integer {
            f64::from(i32::from_ne_bytes(four))
        } else {
            f64::from(f32::from_ne_bytes(four))
        };
        plane[8 * i..8 * i + 8].copy_from_slice(&value.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fours` (4-byte sums) written into the first half of a plane, widened, read back.
    fn widened(fours: &[[u8; 4]], integer: bool) -> Vec<f64> {
        let mut plane = vec![0u8; fours.len() * 8];
        for (i, four) in fours.iter().enumerate() {
            plane[4 * i..4 * i + 4].copy_from_slice(four);
        }
        widen(&mut plane, integer);
        plane
            .chunks_exact(8)
            .map(|b| f64::from_ne_bytes(b.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn widening_turns_each_four_byte_sum_into_its_f64_in_place() {
        let ints = [-2_147_483_648i32, -1020, 0, 7, 2_147_483_647];
        assert_eq!(
            widened(&ints.map(i32::to_ne_bytes), true),
            ints.map(f64::from)
        );
        let floats = [-0.1f32, 254.99998, 1e-3];
        assert_eq!(
            widened(&floats.map(f32::to_ne_bytes), false),
            floats.map(f64::from)
        );
    }

    #[test]
    fn an_archive_past_4_gib_is_refused_before_any_allocation() {
        let huge = NpyArray {
            name: "responses",
            dtype: Dtype::I32,
            shape: vec![2, 40_000, 20_000],
        };
        let error = Npz::size(&[huge]).unwrap_err().to_string();
        assert!(error.contains("at most 4 GiB"), "{error}");
        let small = NpyArray {
            name: "image",
            dtype: Dtype::U8,
            shape: vec![3, 5],
        };
        let size = Npz::size(std::slice::from_ref(&small)).unwrap();
        assert_eq!(Npz::new(&[small]).unwrap().finish().len(), size);
    }
}
