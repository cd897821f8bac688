// gpuconv: 3×3 cross-correlation of an 8-bit image with up to 8 kernels in one pass, 'valid' or
// with a border.
//
// Mirrored function for function by src/cpu/conv3x3.rs (the buffer paths; texture sources and
// targets have no CPU counterpart beyond src/io.rs's luma); the uniform struct below is
// `Conv3x3Params` in src/params.rs.
//
// Each invocation computes four neighbouring output pixels for every kernel, in
// `rows_per_invocation` rows one below the other: its 3×6 window slides down a row at a time,
// fetching one new input row per output row, and is read once for all kernels. How pixels are
// fetched (`load_row_words`, `load_window_row`) and grouped (`main`, `filter_word`) has no CPU
// counterpart; the arithmetic per pixel does. In buffers, pixels
// travel packed four per u32 (pixel i of a word is bits 8i..8i+7), because WGSL has no 8-bit type
// and one u32 per pixel would move four times the bytes.

const MAX_KERNELS: u32 = 8u;
const WORKGROUP_SIZE: u32 = 64u;

// How responses are combined (`Combine` in src/operation.rs).
const MODE_RESPONSES: u32 = 0u;
const MODE_EDGE: u32 = 1u;
const MODE_THRESHOLD: u32 = 2u;

// Where pixels come from and go to (`SOURCE_*` and `TARGET_*` in src/params.rs). Every binding
// below is always bound, unused ones to small placeholders, so one pipeline serves every pairing.
const SOURCE_BUFFER: u32 = 0u;
const SOURCE_TEXTURE_GRAY: u32 = 1u;
const SOURCE_TEXTURE_RGBA: u32 = 2u;
const SOURCE_TEXTURE_RGBA_SRGB: u32 = 3u;
// What the windows see beyond the source's edges (`Border` in src/operation.rs).
const BORDER_VALID: u32 = 0u;
const BORDER_ZERO: u32 = 1u;
const BORDER_REPLICATE: u32 = 2u;
const BORDER_REFLECT: u32 = 3u;
const TARGET_BUFFER: u32 = 0u;
const TARGET_TEXTURE_RGBA8: u32 = 1u;
const TARGET_TEXTURE_R32UINT: u32 = 2u;

struct Params {
    // Input: `in_height` rows of `in_width` pixels; in a buffer, pixel (x, y) is byte
    // `in_offset + y * in_bytes_per_row + x` of `input`.
    in_width: u32,
    in_height: u32,
    in_bytes_per_row: u32,
    in_offset: u32,
    // Output images of `out_width × out_height`; in a buffer, pixel (x, y) of image p is byte
    // `out_offset + p * bytes_per_image + y * out_bytes_per_row + x`, all three multiples of 4.
    out_width: u32,
    out_height: u32,
    out_bytes_per_row: u32,
    out_offset: u32,
    bytes_per_image: u32,
    words_per_row: u32,
    kernel_count: u32,
    mode: u32,
    threshold: u32,
    // Non-zero when the per-kernel responses are written after the combined image.
    write_responses: u32,
    // Bit k set: kernel k has whole-number weights and is summed exactly in i32.
    integer_mask: u32,
    source_kind: u32,
    target_kind: u32,
    // Output rows each invocation computes, one below the other, reusing the input rows they
    // share: 1 to 8 (a host-side tuning choice; the results are the same).
    rows_per_invocation: u32,
    // One of the BORDER_* constants: VALID gives (W−2)×(H−2), the others W×H, their windows
    // reaching one pixel past each edge.
    border: u32,
    // Kernel k's tap t (row-major) is weights[k * 3u + t / 4u][t % 4u].
    weights: array<vec4<f32>, 24>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<u32>;
@group(0) @binding(2) var<storage, read_write> output: array<u32>;
@group(0) @binding(3) var input_texture: texture_2d<f32>;
@group(0) @binding(4) var output_rgba8: texture_storage_2d_array<rgba8unorm, write>;
@group(0) @binding(5) var output_r32uint: texture_storage_2d_array<r32uint, write>;

// ITU-R 601-2 luma, exactly as Pillow's convert('L') and `io::luma` compute it.
fn luma(rgb: vec3<u32>) -> u32 {
    return (rgb.r * 19595u + rgb.g * 38470u + rgb.b * 7471u + 0x8000u) >> 16u;
}

fn unorm_to_byte(value: vec3<f32>) -> vec3<u32> {
    return vec3<u32>(round(clamp(value, vec3(0.0), vec3(1.0)) * 255.0));
}

// Sampling an sRGB texture decodes it; the bytes the caller stored are the encoded values.
fn srgb_encode(linear: vec3<f32>) -> vec3<f32> {
    let low = linear * 12.92;
    let high = 1.055 * pow(linear, vec3(1.0 / 2.4)) - 0.055;
    return select(high, low, linear <= vec3(0.0031308));
}

fn load_pixel(x: u32, y: u32) -> u32 {
    if params.source_kind == SOURCE_BUFFER {
        let byte = params.in_offset + y * params.in_bytes_per_row + x;
        return (input[byte / 4u] >> ((byte % 4u) * 8u)) & 0xffu;
    }
    let texel = textureLoad(input_texture, vec2<u32>(x, y), 0);
    switch params.source_kind {
        case SOURCE_TEXTURE_GRAY: {
            return unorm_to_byte(texel.rrr).r;
        }
        case SOURCE_TEXTURE_RGBA_SRGB: {
            return luma(unorm_to_byte(srgb_encode(texel.rgb)));
        }
        default: {
            return luma(unorm_to_byte(texel.rgb));
        }
    }
}

// `count` pixels of row y from column x0, from a buffer whose rows start on a word: whole words,
// one or two per row instead of one load per pixel. The second word is read only when its
// pixels are wanted, so it is always inside the bound range. (How pixels are fetched has no CPU
// counterpart: the twin's `load_row` reads the same pixels as a slice.)
fn load_row_words(x0: u32, y: u32, count: u32) -> array<u32, 6> {
    let word = (params.in_offset + y * params.in_bytes_per_row + x0) / 4u;
    let first = input[word];
    var second = 0u;
    if count > 4u {
        second = input[word + 1u];
    }
    var row: array<u32, 6>;
    for (var column = 0u; column < count; column++) {
        let packed = select(second, first, column < 4u);
        row[column] = (packed >> ((column % 4u) * 8u)) & 0xffu;
    }
    return row;
}

fn weight(k: u32, tap: u32) -> f32 {
    return params.weights[k * 3u + tap / 4u][tap % 4u];
}

// Exact: |weights| <= 65536, so nine products of a byte fit i32 with room to spare.
fn integer_response(window: ptr<function, array<u32, 9>>, k: u32) -> u32 {
    var sum = 0i;
    for (var tap = 0u; tap < 9u; tap++) {
        sum += i32((*window)[tap]) * i32(weight(k, tap));
    }
    return u32(min(abs(sum), 255i));
}

// Summed in f32 in row-major tap order; round() in WGSL rounds half to even, like
// f32::round_ties_even on the CPU.
fn float_response(window: ptr<function, array<u32, 9>>, k: u32) -> u32 {
    var sum = 0.0;
    for (var tap = 0u; tap < 9u; tap++) {
        sum += f32((*window)[tap]) * weight(k, tap);
    }
    return u32(min(round(abs(sum)), 255.0));
}

fn combine(vertical: u32, horizontal: u32) -> u32 {
    let sum = vertical + horizontal;
    if params.mode == MODE_EDGE {
        return min(sum, 255u);
    }
    return select(0u, 255u, sum >= params.threshold);
}

// Writes `lanes` pixels packed in `packed` at (x0, y) of output image `plane`.
fn store_pixels(plane: u32, x0: u32, y: u32, lanes: u32, packed: u32) {
    switch params.target_kind {
        case TARGET_BUFFER: {
            let word = (params.out_offset + plane * params.bytes_per_image + y * params.out_bytes_per_row + x0) / 4u;
            if lanes == 4u {
                output[word] = packed;
            } else {
                // The row's last word: bytes past the image belong to the caller, keep them.
                let keep = 0xffffffffu << (lanes * 8u);
                output[word] = (output[word] & keep) | packed;
            }
        }
        case TARGET_TEXTURE_RGBA8: {
            for (var lane = 0u; lane < lanes; lane++) {
                let gray = f32((packed >> (lane * 8u)) & 0xffu) / 255.0;
                textureStore(output_rgba8, vec2<u32>(x0 + lane, y), plane, vec4(gray, gray, gray, 1.0));
            }
        }
        default: {
            for (var lane = 0u; lane < lanes; lane++) {
                let value = (packed >> (lane * 8u)) & 0xffu;
                textureStore(output_r32uint, vec2<u32>(x0 + lane, y), plane, vec4(value, 0u, 0u, 1u));
            }
        }
    }
}

// Where index `index` (−1 to len) of an axis of `len` pixels is read from past the edge, as
// `Border::source_index` says; −1 for a zero.
fn source_index(index: i32, len: u32) -> i32 {
    let n = i32(len);
    if index >= 0 && index < n {
        return index;
    }
    switch params.border {
        case BORDER_REPLICATE: {
            return clamp(index, 0, n - 1);
        }
        case BORDER_REFLECT: {
            if n == 1 {
                return 0;
            }
            return clamp(select(2 * (n - 1) - index, -index, index < 0), 0, n - 1);
        }
        default: {
            return -1;
        }
    }
}

// The lanes + 2 input pixels of window row y under four windows starting at output column x0.
// With the valid border that is input row y from column x0: by whole words when the buffer's
// rows start on words (the engine's own uploads always do), else pixel by pixel. With the
// others, each window reaches a pixel further up and left, mapped at the edges.
fn load_window_row(x0: u32, y: u32, lanes: u32, word_rows: bool) -> array<u32, 6> {
    if params.border != BORDER_VALID {
        var row: array<u32, 6>;
        let source_y = source_index(i32(y) - 1, params.in_height);
        for (var column = 0u; column < lanes + 2u; column++) {
            let source_x = source_index(i32(x0 + column) - 1, params.in_width);
            if source_x >= 0 && source_y >= 0 {
                row[column] = load_pixel(u32(source_x), u32(source_y));
            }
        }
        return row;
    }
    if word_rows {
        return load_row_words(x0, y, lanes + 2u);
    }
    var row: array<u32, 6>;
    for (var column = 0u; column < lanes + 2u; column++) {
        row[column] = load_pixel(x0 + column, y);
    }
    return row;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    // Dispatches past 65535 workgroups spill into y; fold them back into one index.
    let index = id.x + id.y * groups.x * WORKGROUP_SIZE;
    let row_groups = (params.out_height + params.rows_per_invocation - 1u) / params.rows_per_invocation;
    if index >= params.words_per_row * row_groups {
        return;
    }
    let first_y = (index / params.words_per_row) * params.rows_per_invocation;
    let last_y = min(first_y + params.rows_per_invocation, params.out_height);
    let x0 = (index % params.words_per_row) * 4u;
    let lanes = min(4u, params.out_width - x0);
    let word_rows = params.source_kind == SOURCE_BUFFER && params.in_offset % 4u == 0u
        && params.in_bytes_per_row % 4u == 0u;

    // Each input row is fetched once per invocation: the window moves down a row at a time,
    // keeping the two rows it shares with the one above.
    var pixels: array<array<u32, 6>, 3>;
    pixels[1] = load_window_row(x0, first_y, lanes, word_rows);
    pixels[2] = load_window_row(x0, first_y + 1u, lanes, word_rows);
    for (var y = first_y; y < last_y; y++) {
        pixels[0] = pixels[1];
        pixels[1] = pixels[2];
        pixels[2] = load_window_row(x0, y + 2u, lanes, word_rows);
        filter_word(&pixels, x0, y, lanes);
    }
}

// Four neighbouring output pixels of row y from their 3 × (lanes + 2) input pixels, for every
// kernel, stored in every output image.
fn filter_word(pixels: ptr<function, array<array<u32, 6>, 3>>, x0: u32, y: u32, lanes: u32) {
    let combined = params.mode != MODE_RESPONSES;
    let first_response_plane = select(0u, 1u, combined);
    var packed: array<u32, 9>;
    for (var lane = 0u; lane < lanes; lane++) {
        var window: array<u32, 9>;
        for (var tap = 0u; tap < 9u; tap++) {
            window[tap] = (*pixels)[tap / 3u][lane + tap % 3u];
        }
        var responses: array<u32, MAX_KERNELS>;
        for (var k = 0u; k < params.kernel_count; k++) {
            if (params.integer_mask & (1u << k)) != 0u {
                responses[k] = integer_response(&window, k);
            } else {
                responses[k] = float_response(&window, k);
            }
            packed[first_response_plane + k] |= responses[k] << (lane * 8u);
        }
        if combined {
            packed[0] |= combine(responses[0], responses[1]) << (lane * 8u);
        }
    }

    if combined {
        store_pixels(0u, x0, y, lanes, packed[0]);
    }
    if !combined || params.write_responses != 0u {
        for (var k = 0u; k < params.kernel_count; k++) {
            let plane = first_response_plane + k;
            store_pixels(plane, x0, y, lanes, packed[plane]);
        }
    }
}
