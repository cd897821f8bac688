//! The CPU twin of `shaders/conv3x3.wgsl`.
//!
//! Each function here is named after the WGSL function it mirrors and does the same arithmetic,
//! so the two files can be read side by side. One difference is deliberate: where the shader
//! gives each invocation one output word, `main` here walks a whole output row per kernel tap,
//! so the compiler turns the inner loops into SIMD over many pixels at once. Per pixel the sums
//! are the same, in the same tap order, so the results are bit-identical. And a rank-1 integer
//! kernel (the lesson's two line filters, `1,2,1;2,4,2;1,2,1`) is summed as a column pass then a
//! row pass: fewer operations per pixel, and the same exact integer sums.

#![allow(
    clippy::needless_range_loop,
    reason = "keeps the code comparable to the WGSL shader"
)]

use rayon::prelude::*;

use crate::params::{Conv3x3Params, MODE_EDGE, MODE_RESPONSES, MODE_SUMS};

/// Input bytes one rayon task reads, roughly: big enough to amortise scheduling, small enough
/// that a task's three input rows and its accumulators stay in L2 cache. (A "band" is the
/// stream's much larger piece of rows; these are the pieces rayon spreads over the cores.)
const TASK_BYTES: usize = 256 * 1024;

/// `load_pixel` in the shader: input row `y` from column `x`, as a slice of `len` pixels.
fn load_row<'a>(params: &Conv3x3Params, input: &'a [u8], x: u32, y: u32, len: usize) -> &'a [u8] {
    let start =
        params.in_offset as usize + y as usize * params.in_bytes_per_row as usize + x as usize;
    &input[start..start + len]
}

/// Output pixels summed together in registers: wide enough for one AVX2 register of `i16`s
/// twice over, small enough that the accumulators never leave registers.
const CHUNK: usize = 32;

/// How one integer kernel is summed, worked out once per call rather than per row.
enum IntegerTaps {
    /// The sum fits `i16` and the kernel is rank 1: a column pass, then a row pass.
    Separable { column: Factor, row: Factor },
    /// The sum fits `i16`: the nonzero taps as `(row, column, weight)`.
    Narrow(Vec<(usize, usize, i16)>),
    /// Anything else, in `i32`.
    Wide(Vec<(usize, usize, i32)>),
}

impl IntegerTaps {
    /// The plan for integer kernel `k`.
    ///
    /// The sum is exact in `i16` lanes whenever `255 · Σ|weight|` fits (the lesson's filters
    /// need at most 2040), which packs twice the pixels per SIMD instruction.
    fn new(params: &Conv3x3Params, k: usize) -> Self {
        let weights: [i32; 9] = std::array::from_fn(|tap| params.weight(k, tap) as i32);
        let taps: Vec<(usize, usize, i32)> = (0..9)
            .filter(|&tap| weights[tap] != 0)
            .map(|tap| (tap / 3, tap % 3, weights[tap]))
            .collect();
        let largest_sum: i32 = taps.iter().map(|&(_, _, w)| w.abs() * 255).sum();
        if largest_sum > i32::from(i16::MAX) {
            return Self::Wide(taps);
        }
        match rank_one_factors(weights) {
            // Worth it when both factors have two or more taps: 3 + 2 operations instead of 6
            // for a line filter, 3 + 3 instead of 9 for `1,2,1;2,4,2;1,2,1`. Measured on one
            // thread of a 2-core EPYC: the edge image 12-40% faster than the direct sums.
            Some((column, row)) if column.len() > 1 && row.len() > 1 => {
                Self::Separable { column, row }
            }
            _ => Self::Narrow(taps.iter().map(|&(r, c, w)| (r, c, w as i16)).collect()),
        }
    }
}

/// `integer_response` in the shader, for a whole output row: the sum of `weight × pixel` over
/// the nonzero taps, then `min(|sum|, 255)`.
fn integer_response(
    params: &Conv3x3Params,
    input: &[u8],
    y: u32,
    taps: &IntegerTaps,
    sums: &mut [i32],
    out: &mut [u8],
) {
    let width = out.len();
    let rows: [&[u8]; 3] =
        std::array::from_fn(|r| load_row(params, input, 0, y + r as u32, width + 2));
    match taps {
        IntegerTaps::Separable { column, row } => {
            integer_response_separable_i16(&rows, column, row, out);
        }
        IntegerTaps::Narrow(taps) => integer_response_i16(&rows, taps, out),
        IntegerTaps::Wide(taps) => integer_response_i32(&rows, taps, sums, out),
    }
}

#[multiversion::multiversion(targets("x86_64+avx2", "x86_64+sse4.1"))]
fn integer_response_i16(rows: &[&[u8]; 3], taps: &[(usize, usize, i16)], out: &mut [u8]) {
    let width = out.len();
    let whole_chunks = width / CHUNK * CHUNK;
    for x in (0..whole_chunks).step_by(CHUNK) {
        // A constant length lets the compiler keep the sums in SIMD registers across the taps.
        chunk_i16(rows, taps, x, &mut out[x..x + CHUNK]);
    }
    chunk_i16(rows, taps, whole_chunks, &mut out[whole_chunks..]);
}

/// Output pixels `x..x + out.len()` (at most [`CHUNK`]) of one row, summed in `i16`.
#[inline(always)]
fn chunk_i16(rows: &[&[u8]; 3], taps: &[(usize, usize, i16)], x: usize, out: &mut [u8]) {
    let len = out.len();
    let mut sums = [0i16; CHUNK];
    for &(r, c, weight) in taps {
        let pixels = &rows[r][x + c..x + c + len];
        for i in 0..len {
            sums[i] = sums[i].wrapping_add(weight.wrapping_mul(i16::from(pixels[i])));
        }
    }
    for i in 0..len {
        out[i] = sums[i].unsigned_abs().min(255) as u8;
    }
}

/// The nonzero entries of one factor of a rank-1 kernel: `(index, weight)`.
type Factor = Vec<(usize, i16)>;

/// The nonzero taps of integer vectors `column` and `row` whose outer product is `weights`
/// (row-major), as `(index, weight)` pairs; `None` when the kernel is not rank 1.
///
/// Every partial sum of the two passes is bounded by `255 · Σ|weight|` (since
/// `|column[r] · row[c]| = |weights[r][c]|`), so whenever the direct sum fits in `i16`, so do
/// both passes, and the result is the same integer.
fn rank_one_factors(weights: [i32; 9]) -> Option<(Factor, Factor)> {
    let first = (0..3).find(|&r| weights[r * 3..r * 3 + 3].iter().any(|&w| w != 0))?;
    let first_row = &weights[first * 3..first * 3 + 3];
    let divisor = first_row.iter().fold(0, |g, &w| gcd(g, w.unsigned_abs()));
    let row: [i32; 3] = std::array::from_fn(|c| first_row[c] / divisor as i32);
    let pivot = row.iter().position(|&w| w != 0)?;
    let mut column = [0i32; 3];
    for r in 0..3 {
        column[r] = weights[r * 3 + pivot] / row[pivot];
        if (0..3).any(|c| column[r] * row[c] != weights[r * 3 + c]) {
            return None;
        }
    }
    let nonzero = |v: [i32; 3]| -> Factor {
        (0..3)
            .filter(|&i| v[i] != 0)
            .map(|i| (i, v[i] as i16))
            .collect()
    };
    Some((nonzero(column), nonzero(row)))
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Output pixels per block of the separable path: the column sums of one block (about 1 KiB)
/// stay in L1 cache between the two passes.
const SEPARABLE_BLOCK: usize = 512;

#[multiversion::multiversion(targets("x86_64+avx2", "x86_64+sse4.1"))]
fn integer_response_separable_i16(
    rows: &[&[u8]; 3],
    column: &[(usize, i16)],
    row: &[(usize, i16)],
    out: &mut [u8],
) {
    let mut columns = [0i16; SEPARABLE_BLOCK + 2];
    for (block, out) in out.chunks_mut(SEPARABLE_BLOCK).enumerate() {
        let x = block * SEPARABLE_BLOCK;
        let len = out.len();
        // The column weights down each of the block's `len + 2` input columns...
        let columns = &mut columns[..len + 2];
        columns.fill(0);
        for &(r, weight) in column {
            for (sum, &pixel) in columns.iter_mut().zip(&rows[r][x..x + len + 2]) {
                *sum = sum.wrapping_add(weight.wrapping_mul(i16::from(pixel)));
            }
        }
        // ...then the row weights across, a chunk at a time with the sums in registers.
        let whole_chunks = len / CHUNK * CHUNK;
        for x in (0..whole_chunks).step_by(CHUNK) {
            row_pass_i16(columns, row, x, &mut out[x..x + CHUNK]);
        }
        row_pass_i16(columns, row, whole_chunks, &mut out[whole_chunks..]);
    }
}

/// Output pixels `x..x + out.len()` (at most [`CHUNK`]) of a block, from its column sums.
#[inline(always)]
fn row_pass_i16(columns: &[i16], row: &[(usize, i16)], x: usize, out: &mut [u8]) {
    let len = out.len();
    let mut sums = [0i16; CHUNK];
    for &(c, weight) in row {
        let columns = &columns[x + c..x + c + len];
        for i in 0..len {
            sums[i] = sums[i].wrapping_add(weight.wrapping_mul(columns[i]));
        }
    }
    for i in 0..len {
        out[i] = sums[i].unsigned_abs().min(255) as u8;
    }
}

fn integer_response_i32(
    rows: &[&[u8]; 3],
    taps: &[(usize, usize, i32)],
    sums: &mut [i32],
    out: &mut [u8],
) {
    let sums = &mut sums[..out.len()];
    integer_sum_i32(rows, taps, sums);
    for (o, &sum) in out.iter_mut().zip(sums.iter()) {
        *o = sum.unsigned_abs().min(255) as u8;
    }
}

/// `integer_sum` in the shader, for a whole output row: the exact `i32` sums (`|weight|` at most
/// 65536, so nine products of a byte fit with room to spare), one per element of `sums`.
#[multiversion::multiversion(targets("x86_64+avx2", "x86_64+sse4.1"))]
fn integer_sum_i32(rows: &[&[u8]; 3], taps: &[(usize, usize, i32)], sums: &mut [i32]) {
    let width = sums.len();
    sums.fill(0);
    for &(r, c, weight) in taps {
        for (sum, &pixel) in sums.iter_mut().zip(&rows[r][c..c + width]) {
            *sum += i32::from(pixel) * weight;
        }
    }
}

/// A kernel's nonzero taps as `(row, column, weight)`, for sums in `i32`.
type WideTaps = Vec<(usize, usize, i32)>;

/// Integer kernel `k`'s [`WideTaps`].
fn wide_taps(params: &Conv3x3Params, k: usize) -> WideTaps {
    (0..9)
        .map(|tap| (tap / 3, tap % 3, params.weight(k, tap) as i32))
        .filter(|&(_, _, weight)| weight != 0)
        .collect()
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
    float_sum(params, input, y, k, sums);
    for (o, &sum) in out.iter_mut().zip(sums.iter()) {
        *o = sum.abs().round_ties_even().min(255.0) as u8;
    }
}

/// `float_sum` in the shader, for a whole output row: `f32` products summed in row-major tap
/// order, one output pixel per element of `sums`.
fn float_sum(params: &Conv3x3Params, input: &[u8], y: u32, k: usize, sums: &mut [f32]) {
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
}

/// The sums of output row `y` for every kernel ([`MODE_SUMS`]), each written as 4 bytes a pixel
/// (native byte order) into bytes `span` of its plane.
fn write_sums(
    params: &Conv3x3Params,
    input: &[u8],
    y: u32,
    wide: &[Option<WideTaps>],
    scratch: &mut Scratch,
    planes: &mut [&mut [u8]],
    span: std::ops::Range<usize>,
) {
    let width = params.out_width as usize;
    for (k, plane) in planes.iter_mut().enumerate() {
        let out = &mut plane[span.clone()];
        if let Some(taps) = &wide[k] {
            let rows: [&[u8]; 3] =
                std::array::from_fn(|r| load_row(params, input, 0, y + r as u32, width + 2));
            integer_sum_i32(&rows, taps, &mut scratch.integer_sums);
            out.copy_from_slice(bytemuck::cast_slice(&scratch.integer_sums));
        } else {
            float_sum(params, input, y, k, &mut scratch.float_sums);
            out.copy_from_slice(bytemuck::cast_slice(&scratch.float_sums));
        }
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

/// Scratch rows for one task's output rows.
struct Scratch {
    integer_sums: Vec<i32>,
    float_sums: Vec<f32>,
    responses: Vec<Vec<u8>>,
}

/// `main` in the shader: fills `planes` (the combined image first when there is one, then one
/// per kernel if responses are written), each `out_height` rows `params.out_bytes_per_row` bytes apart.
/// Its tasks run as `parallel` says.
///
/// # Panics
/// When `planes` does not hold [`Conv3x3Params::output_count`] planes large enough for
/// `out_height` rows, or `input` is shorter than `params` say.
pub fn main(
    params: &Conv3x3Params,
    input: &[u8],
    planes: &mut [&mut [u8]],
    parallel: Parallel<'_>,
) {
    let width = params.out_width as usize;
    let height = params.out_height as usize;
    let stride = params.out_bytes_per_row as usize;
    let row_bytes = params.out_row_bytes() as usize;
    assert_eq!(planes.len(), params.output_count() as usize);
    assert!(
        planes
            .iter()
            .all(|p| p.len() >= (height - 1) * stride + row_bytes)
    );
    debug_assert_eq!(
        params.border,
        crate::params::BORDER_VALID,
        "the CPU filters padded images 'valid'"
    );
    let kernel_count = params.kernel_count as usize;
    let combined = params.mode != MODE_RESPONSES;
    let first_response_plane = usize::from(combined);
    let task_rows = (TASK_BYTES / params.in_width as usize).clamp(1, 256);
    let sums = params.mode == MODE_SUMS;
    let integer_taps: Vec<Option<IntegerTaps>> = (0..kernel_count)
        .map(|k| (params.is_integer(k) && !sums).then(|| IntegerTaps::new(params, k)))
        .collect();
    let wide: Vec<Option<WideTaps>> = (0..kernel_count)
        .map(|k| (params.is_integer(k) && sums).then(|| wide_taps(params, k)))
        .collect();

    // Split every plane into the same pieces of rows, then regroup so each task owns one piece of
    // each plane.
    let mut tasks: Vec<Vec<&mut [u8]>> = Vec::new();
    for plane in planes.iter_mut() {
        for (b, chunk) in plane
            .chunks_mut(task_rows * stride)
            .take(height.div_ceil(task_rows))
            .enumerate()
        {
            if tasks.len() <= b {
                tasks.push(Vec::with_capacity(params.output_count() as usize));
            }
            tasks[b].push(chunk);
        }
    }

    let scratch = || Scratch {
        integer_sums: vec![0; width],
        float_sums: vec![0.0; width],
        responses: vec![vec![0; width]; kernel_count],
    };
    let run = |scratch: &mut Scratch, (task, mut outputs): (usize, Vec<&mut [u8]>)| {
        let rows_in_task = task_rows.min(height - task * task_rows);
        for row in 0..rows_in_task {
            let y = (task * task_rows + row) as u32;
            if sums {
                let span = row * stride..row * stride + row_bytes;
                write_sums(params, input, y, &wide, scratch, &mut outputs, span);
                continue;
            }
            let span = row * stride..row * stride + width;
            for k in 0..kernel_count {
                // Write straight into the response plane when there is one.
                let out = match outputs.get_mut(first_response_plane + k) {
                    Some(plane) => &mut plane[span.clone()],
                    None => &mut scratch.responses[k][..],
                };
                if let Some(taps) = &integer_taps[k] {
                    integer_response(params, input, y, taps, &mut scratch.integer_sums, out);
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
    };
    match parallel {
        Parallel::Current => tasks
            .into_par_iter()
            .enumerate()
            .for_each_init(scratch, run),
        Parallel::Caller => {
            let mut scratch = scratch();
            tasks
                .into_iter()
                .enumerate()
                .for_each(|task| run(&mut scratch, task));
        }
        Parallel::Beside(pool) => {
            // Tasks taken in turn by the caller, at once, and by the pool's threads as they
            // wake: a call never waits for a sleeping thread before work starts. Each takes a
            // run of consecutive tasks, a share of what is left (at first large, at the end
            // one task), so that threads work apart from each other in memory (not on
            // neighbouring rows, whose pages they would fault in together) and still finish
            // together.
            let helpers = pool
                .current_num_threads()
                .min(tasks.len().saturating_sub(1));
            let shares = 2 * (helpers + 1);
            let queue = std::sync::Mutex::new(tasks.into_iter().enumerate());
            let next = || {
                let mut queue = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let take = (queue.len() / shares).max(1);
                queue.by_ref().take(take).collect::<Vec<_>>()
            };
            let work = || {
                let mut scratch = scratch();
                loop {
                    let run_of_tasks = next();
                    if run_of_tasks.is_empty() {
                        break;
                    }
                    for task in run_of_tasks {
                        run(&mut scratch, task);
                    }
                }
            };
            pool.in_place_scope(|scope| {
                for _ in 0..helpers {
                    scope.spawn(|_| work());
                }
                work();
            });
        }
    }
}

/// Where [`main`]'s tasks run.
#[derive(Clone, Copy, Debug)]
pub enum Parallel<'a> {
    /// Spread over rayon's current pool (the global one, outside any other).
    Current,
    /// One after another on the calling thread.
    Caller,
    /// On the calling thread and `pool`'s threads together, each taking runs of consecutive
    /// tasks while any are left.
    Beside(&'a rayon::ThreadPool),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_one_kernels_factor_into_their_column_and_row() {
        let sobel_vertical = [1, 0, -1, 2, 0, -2, 1, 0, -1];
        assert_eq!(
            rank_one_factors(sobel_vertical),
            Some((vec![(0, 1), (1, 2), (2, 1)], vec![(0, 1), (2, -1)]))
        );
        let horizontal_lines = [1, 2, 1, 0, 0, 0, -1, -2, -1];
        assert_eq!(
            rank_one_factors(horizontal_lines),
            Some((vec![(0, 1), (2, -1)], vec![(0, 1), (1, 2), (2, 1)]))
        );
        // A common factor goes to the column, whatever the signs.
        assert_eq!(
            rank_one_factors([0, 0, 0, -6, 3, 0, 4, -2, 0]),
            Some((vec![(1, 3), (2, -2)], vec![(0, -2), (1, 1)]))
        );
        for rank_two in [[1, 0, 1, 0, 1, 0, 1, 0, 1], [0, 1, 0, 1, -4, 1, 0, 1, 0]] {
            assert_eq!(rank_one_factors(rank_two), None, "{rank_two:?}");
        }
        assert_eq!(rank_one_factors([0; 9]), None);
    }

    #[test]
    fn every_rank_one_product_factors_back_exactly() {
        let values = [-3, -1, 0, 1, 2, 5];
        for a in values {
            for b in values {
                for c in values {
                    let column = [a, b, c];
                    let row = [b, c, a];
                    let weights = std::array::from_fn(|t| column[t / 3] * row[t % 3]);
                    match rank_one_factors(weights) {
                        Some((column, row)) => {
                            let mut product = [0; 9];
                            for &(r, cw) in &column {
                                for &(c, rw) in &row {
                                    product[r * 3 + c] = i32::from(cw) * i32::from(rw);
                                }
                            }
                            assert_eq!(product, weights);
                        }
                        None => assert_eq!(weights, [0; 9]),
                    }
                }
            }
        }
    }
}
