// gpuconv: 'valid' 3×3 cross-correlation of an 8-bit image with up to 8 kernels in one pass.
//
// Mirrored line for line by src/cpu/conv3x3.rs (same function names, same index maths); the
// uniform struct below is `Conv3x3Params` in src/params.rs.
//
// Pixels travel packed, four per u32 (little-endian byte order: pixel i of a word is bits
// 8i..8i+7), because WGSL has no 8-bit type and one u32 per pixel would move four times the bytes.
// Each invocation computes one output word, that is four consecutive output pixels, for every
// kernel, so each input window is fetched once for all kernels.

const MAX_KERNELS: u32 = 8u;
const WORKGROUP_SIZE: u32 = 64u;

// How responses are combined (`Combine` in src/operation.rs).
const MODE_RESPONSES: u32 = 0u;
const MODE_EDGE: u32 = 1u;
const MODE_THRESHOLD: u32 = 2u;

struct Params {
    // Input: `in_height` rows of `in_width` pixels; pixel (x, y) is byte
    // `in_offset + y * in_stride + x` of `input`.
    in_width: u32,
    in_height: u32,
    in_stride: u32,
    in_offset: u32,
    // Output planes are tightly packed `out_width × out_height` images, `plane_words` words apart.
    out_width: u32,
    out_height: u32,
    plane_words: u32,
    kernel_count: u32,
    mode: u32,
    threshold: u32,
    // Non-zero when the per-kernel responses are written after the combined plane.
    write_responses: u32,
    // Bit k set: kernel k has whole-number weights and is summed exactly in i32.
    integer_mask: u32,
    // Kernel k's tap t (row-major) is weights[k * 3u + t / 4u][t % 4u].
    weights: array<vec4<f32>, 24>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<u32>;
@group(0) @binding(2) var<storage, read_write> output: array<u32>;

fn load_pixel(x: u32, y: u32) -> u32 {
    let byte = params.in_offset + y * params.in_stride + x;
    return (input[byte / 4u] >> ((byte % 4u) * 8u)) & 0xffu;
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

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    // Dispatches past 65535 workgroups spill into y; fold them back into one word index.
    let word = id.x + id.y * groups.x * WORKGROUP_SIZE;
    if word >= params.plane_words {
        return;
    }
    let pixel_count = params.out_width * params.out_height;
    let first = word * 4u;
    var x = first % params.out_width;
    var y = first / params.out_width;

    let combined = params.mode != MODE_RESPONSES;
    let first_response_plane = select(0u, 1u, combined);
    var packed: array<u32, 9>;
    for (var lane = 0u; lane < 4u && first + lane < pixel_count; lane++) {
        var window: array<u32, 9>;
        for (var tap = 0u; tap < 9u; tap++) {
            window[tap] = load_pixel(x + tap % 3u, y + tap / 3u);
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
        x += 1u;
        if x == params.out_width {
            x = 0u;
            y += 1u;
        }
    }

    if combined {
        output[word] = packed[0];
    }
    if !combined || params.write_responses != 0u {
        for (var k = 0u; k < params.kernel_count; k++) {
            let plane = first_response_plane + k;
            // With responses not written, the buffer holds only the combined plane.
            output[plane * params.plane_words + word] = packed[plane];
        }
    }
}
