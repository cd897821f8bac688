//! The CPU twin of `shaders/conv3x3.wgsl`.
//!
//! Each function here is named after the WGSL function it mirrors and does the same arithmetic,
//! so the two files can be read side by side. One difference is deliberate: where the shader
//! gives each invocation one output word, `main` here walks a whole output row per kernel tap,
//! so the compiler turns the inner loops into SIMD over many pixels at once. Per pixel the sums
//! are the same, in the same tap order, so the results are bit-identical.

#![allow(
    clippy::needless_range_loop,
    reason = "keeps the code comparable to the WGSL shader"
)]

use rayon::prelude::*;

use crate::params::{Conv3x3Params, MODE_EDGE, MODE_RESPONSES};

/// Input bytes one rayon task reads, roughly: big enough to amortise scheduling, small enough
/// that a band's three input rows and its accumulators stay in L2 cache.
const BAND_BYTES: usize = 256 * 1024;

/// `load_pixel` in the shader: input row `y` from column `x`, as a slice of `len` pixels.
fn load_row<'a>(params: &Conv3x3Params, input: &'a [u8], x: u32, y: u32, len: usize) -> &'a [u8] {
    let start = params.in_offset as usize + y as usize * params.in_stride as usize + x as usize;
    &input[start..start + len]
}

/// `integer_response` in the shader, for a whole output row: `sum` of `i32` products, then
/// `min(|sum|, 255)`. Zero taps add nothing and are skipped.
fn integer_response(
    params: &Conv3x3Params,
    input: &[u8],
    y: u32,
    k: usize,
    sums: &mut [i32],
    out: &mut [u8],
) {
    sums.fill(0);
    for tap in 0..9 {
        let weight = params.weight(k, tap) as i32;
        if weight == 0 {
            continue;
        }
        let pixels = load_row(
            params,
            input,
            tap as u32 % 3,
            y + tap as u32 / 3,
            sums.len(),
        );
        for (sum, &pixel) in sums.iter_mut().zip(pixels) {
            *sum += i32::from(pixel) * weight;
        }
    }
    for (o, &sum) in out.iter_mut().zip(sums.iter()) {
        *o = sum.unsigned_abs().min(255) as u8;
    }
}

/// `float_response` in the shader, for a whole output row: `f32` products summed in row-major tap
/// order, then `min(round(|sum|), 255)` with ties to even. Skipping a zero tap leaves every sum
/// unchanged (adding `+0.0` is exact, and only the sign of a zero could differ, which `abs` drops).
fn float_response(
    params: &Conv3x3Params,
    input: &[u8],
    y: u32,
    k: usize,
    sums: &mut [f32],
    out: &mut [u8],
) {
    sums.fill(0.0);
    for tap in 0..9 {
        let weight = params.weight(k, tap);
        if weight == 0.0 {
            continue;
        }
        let pixels = load_row(
            params,
            input,
            tap as u32 % 3,
            y + tap as u32 / 3,
            sums.len(),
        );
        for (sum, &pixel) in sums.iter_mut().zip(pixels) {
            *sum += f32::from(pixel) * weight;
        }
    }
    for (o, &sum) in out.iter_mut().zip(sums.iter()) {
        *o = sum.abs().round_ties_even().min(255.0) as u8;
    }
}

/// `combine` in the shader, for a whole output row.
fn combine(params: &Conv3x3Params, vertical: &[u8], horizontal: &[u8], out: &mut [u8]) {
    let rows = out.iter_mut().zip(vertical.iter().zip(horizontal));
    if params.mode == MODE_EDGE {
        rows.for_each(|(o, (&v, &h))| *o = v.saturating_add(h));
    } else {
        let threshold = params.threshold as u16;
        rows.for_each(|(o, (&v, &h))| {
            *o = if u16::from(v) + u16::from(h) >= threshold {
                255
            } else {
                0
            }
        });
    }
}

/// Scratch rows for one band of output rows.
struct Scratch {
    integer_sums: Vec<i32>,
    float_sums: Vec<f32>,
    responses: Vec<Vec<u8>>,
}

/// `main` in the shader: fills `planes` (the combined image first when there is one, then one
/// per kernel if responses are written), each `out_height` rows `params.out_stride` bytes apart.
///
/// # Panics
/// When `planes` does not hold [`Conv3x3Params::plane_count`] planes large enough for
/// `out_height` rows, or `input` is shorter than `params` say.
pub fn main(params: &Conv3x3Params, input: &[u8], planes: &mut [&mut [u8]]) {
    let width = params.out_width as usize;
    let height = params.out_height as usize;
    let stride = params.out_stride as usize;
    assert_eq!(planes.len(), params.plane_count() as usize);
    assert!(
        planes
            .iter()
            .all(|p| p.len() >= (height - 1) * stride + width)
    );
    let kernel_count = params.kernel_count as usize;
    let combined = params.mode != MODE_RESPONSES;
    let first_response_plane = usize::from(combined);
    let band_rows = (BAND_BYTES / params.in_width as usize).clamp(1, 256);

    // Split every plane into the same bands of rows, then regroup so each task owns one band of
    // each plane.
    let mut bands: Vec<Vec<&mut [u8]>> = Vec::new();
    for plane in planes.iter_mut() {
        for (b, chunk) in plane
            .chunks_mut(band_rows * stride)
            .take(height.div_ceil(band_rows))
            .enumerate()
        {
            if bands.len() <= b {
                bands.push(Vec::with_capacity(params.plane_count() as usize));
            }
            bands[b].push(chunk);
        }
    }

    bands.into_par_iter().enumerate().for_each_init(
        || Scratch {
            integer_sums: vec![0; width],
            float_sums: vec![0.0; width],
            responses: vec![vec![0; width]; kernel_count],
        },
        |scratch, (band, mut outputs)| {
            let rows_in_band = band_rows.min(height - band * band_rows);
            for row in 0..rows_in_band {
                let y = (band * band_rows + row) as u32;
                let span = row * stride..row * stride + width;
                for k in 0..kernel_count {
                    // Write straight into the response plane when there is one.
                    let out = match outputs.get_mut(first_response_plane + k) {
                        Some(plane) => &mut plane[span.clone()],
                        None => &mut scratch.responses[k][..],
                    };
                    if params.is_integer(k) {
                        integer_response(params, input, y, k, &mut scratch.integer_sums, out);
                    } else {
                        float_response(params, input, y, k, &mut scratch.float_sums, out);
                    }
                }
                if combined {
                    let (combined_plane, responses) = outputs.split_at_mut(1);
                    let response = |k: usize| -> &[u8] {
                        match responses.get(k) {
                            Some(plane) => &plane[span.clone()],
                            None => &scratch.responses[k],
                        }
                    };
                    combine(
                        params,
                        response(0),
                        response(1),
                        &mut combined_plane[0][span.clone()],
                    );
                }
            }
        },
    );
}
