// gpuconv: 3×3 cross-correlation of an 8-bit image with up to 8 kernels in one pass, 'valid' or
// with a border.
//
// Mirrored function for function by src/cpu/conv3x3.rs (the buffer paths; texture sources and
// targets have no CPU counterpart beyond src/io.rs's luma); the uniform struct below is
// `Conv3x3Params` in src/params.rs.
//
// One module, many pipelines: everything that decides the shape of the work (kernel count,
// integer or float kernels, how responses combine, the border, where pixels come from and go to,
// how they are aligned there, rows per invocation) is a pipeline-overridable constant, so each
// operation runs a pipeline compiled for it alone (`Variant` in src/gpu/pipeline.rs) and no
// branch on the operation is left in the hot loop. Only the weights and sizes are read at run
// time, from the uniform.
//
// Each invocation computes 16 neighbouring output pixels (four packed words, one `vec4<u32>`) in
// `ROWS` rows one below the other: its 3 × 18 input window slides down a row at a time, fetching
// one new input row per output row, and is read once for all kernels. The pixels of a row travel
// packed four per u32 (pixel i of a word is bits 8i..8i+7) because WGSL has no 8-bit type and one
// u32 per pixel would move four times the bytes; rows aligned to 16 bytes are read and written a
// `vec4<u32>` (16 pixels) at a time, the widest load WGSL has. How pixels are fetched and grouped
// (`fetch_row`, `taps`, `filter_row`) has no CPU counterpart; the arithmetic per pixel does.

// ---- The variant: set per pipeline by src/gpu/pipeline.rs (`Variant::constants`). ----

// How many kernels are applied, 1 to 8.
override KERNEL_COUNT: u32 = 1u;
// Bit k set: kernel k has whole-number weights and is summed exactly in i32.
override INTEGER_MASK: u32 = 1u;
// How responses are combined: one of the MODE_* constants (`Combine` in src/operation.rs).
override MODE: u32 = 0u;
// Whether the per-kernel responses are written after the combined image.
override WRITE_RESPONSES: bool = false;
// What the windows see beyond the source's edges: one of the BORDER_* constants.
override BORDER: u32 = 0u;
// Where pixels come from: one of the SOURCE_* constants.
override SOURCE_KIND: u32 = 0u;
// What a buffer source's offset and row stride are multiples of: 16 (rows read a `vec4<u32>`
// at a time, and the bound range reaches the 16-byte group holding the last pixel), 4 (rows
// read a word at a time) or 1 (pixel by pixel). Windows that reach past the edges (any border
// but 'valid') and textures are read pixel by pixel whatever this says.
override SOURCE_ALIGN: u32 = 1u;
// Where results go: one of the TARGET_* constants.
override TARGET_KIND: u32 = 0u;
// What a buffer target's offset, row stride and image stride are multiples of: 16 (written
// through `output4` only, 16 pixels a store, and the bound range reaches the 16-byte group
// holding the last pixel) or 4 (through `output` only, a word at a time).
override TARGET_ALIGN: u32 = 4u;
// Output rows each invocation computes, one below the other, sharing the input rows they
// overlap: 1 to 8 (a tuning choice; the results are the same).
override ROWS: u32 = 4u;

const WORKGROUP_SIZE: u32 = 64u;
// Output pixels per invocation and row: four packed words.
const COLUMNS: u32 = 16u;

const MODE_RESPONSES: u32 = 0u;
const MODE_EDGE: u32 = 1u;
const MODE_THRESHOLD: u32 = 2u;
// Each kernel's signed sum, unclipped, a 32-bit word a pixel: the i32 of a whole-number kernel,
// the f32's bits of a fractional one (Keras Conv2D's output, before any activation).
const MODE_SUMS: u32 = 3u;

const SOURCE_BUFFER: u32 = 0u;
const SOURCE_TEXTURE_GRAY: u32 = 1u;
const SOURCE_TEXTURE_RGBA: u32 = 2u;
const SOURCE_TEXTURE_RGBA_SRGB: u32 = 3u;
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
    // Invocations per output row: ceil(out_width / COLUMNS).
    groups_per_row: u32,
    // The threshold of MODE_THRESHOLD.
    threshold: u32,
    // The rest of the header is the shape of the work, which the shader takes from its
    // overrides; the CPU twin reads it from here.
    kernel_count: u32,
    mode: u32,
    write_responses: u32,
    integer_mask: u32,
    source_kind: u32,
    target_kind: u32,
    rows_per_invocation: u32,
    border: u32,
    _padding: u32,
    // Kernel k's tap t (row-major) is weights[k * 3u + t / 4u][t % 4u]; integer_weights holds
    // the same numbers as i32 for the kernels INTEGER_MASK names, so that no tap is converted
    // per pixel.
    weights: array<vec4<f32>, 24>,
    integer_weights: array<vec4<i32>, 24>,
}

@group(0) @binding(0) var<uniform> params: Params;
// The source buffer is bound twice, as words and as groups of four words: the same bytes, read
// at the width their alignment allows. The target is bound as one or the other (a placeholder
// takes the other binding), since two writable views of the same bytes may not be bound at once.
@group(0) @binding(1) var<storage, read> input: array<u32>;
@group(0) @binding(2) var<storage, read_write> output: array<u32>;
@group(0) @binding(3) var input_texture: texture_2d<f32>;
@group(0) @binding(4) var output_rgba8: texture_storage_2d_array<rgba8unorm, write>;
@group(0) @binding(5) var output_r32uint: texture_storage_2d_array<r32uint, write>;
@group(0) @binding(6) var<storage, read> input4: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read_write> output4: array<vec4<u32>>;

// ---- Fetching pixels ----

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

// Source pixel (x, y), inside the source.
fn load_pixel(x: u32, y: u32) -> u32 {
    if SOURCE_KIND == SOURCE_BUFFER {
        let byte = params.in_offset + y * params.in_bytes_per_row + x;
        return (input[byte / 4u] >> ((byte % 4u) * 8u)) & 0xffu;
    }
    let texel = textureLoad(input_texture, vec2<u32>(x, y), 0);
    if SOURCE_KIND == SOURCE_TEXTURE_GRAY {
        return unorm_to_byte(texel.rrr).r;
    }
    if SOURCE_KIND == SOURCE_TEXTURE_RGBA_SRGB {
        return luma(unorm_to_byte(srgb_encode(texel.rgb)));
    }
    return luma(unorm_to_byte(texel.rgb));
}

// Where index `index` (−1 to len) of an axis of `len` pixels is read from past the edge, as
// `Border::source_index` says; −1 for a zero.
fn source_index(index: i32, len: u32) -> i32 {
    let n = i32(len);
    if index >= 0 && index < n {
        return index;
    }
    if BORDER == BORDER_REPLICATE {
        return clamp(index, 0, n - 1);
    }
    if BORDER == BORDER_REFLECT {
        if n == 1 {
            return 0;
        }
        return clamp(select(2 * (n - 1) - index, -index, index < 0), 0, n - 1);
    }
    return -1;
}

// Pixel (x, y) of the window image: the source itself for the valid border, else the source
// shifted by one pixel right and down with its edges mapped by the border.
fn window_pixel(x: u32, y: u32) -> u32 {
    if BORDER == BORDER_VALID {
        return load_pixel(x, y);
    }
    let source_x = source_index(i32(x) - 1, params.in_width);
    let source_y = source_index(i32(y) - 1, params.in_height);
    if source_x < 0 || source_y < 0 {
        return 0u;
    }
    return load_pixel(u32(source_x), u32(source_y));
}

// Window pixels x.. x + min(count, 4) − 1 of row y packed into one word, pixel by pixel.
fn gathered_word(x: u32, y: u32, count: u32) -> u32 {
    var word = 0u;
    for (var i = 0u; i < min(count, 4u); i++) {
        word |= window_pixel(x + i, y) << (8u * i);
    }
    return word;
}

// Window pixels x0 .. x0 + 19 of row y, packed: 0–15 in `words`, 16–19 in `tail`. Only the first
// `count` are read (the rest of the last word, and the words past them, are left as whatever is
// cheapest): a row's last invocation may have fewer than 16 outputs.
struct Row {
    words: vec4<u32>,
    tail: u32,
}

fn word_if(word: u32, wanted: bool) -> u32 {
    if wanted {
        return input[word];
    }
    return 0u;
}

fn fetch_row(x0: u32, y: u32, count: u32) -> Row {
    if SOURCE_KIND == SOURCE_BUFFER && BORDER == BORDER_VALID && SOURCE_ALIGN != 1u {
        let byte = params.in_offset + y * params.in_bytes_per_row + x0;
        let word = byte / 4u;
        // Words are read only where they hold wanted pixels, so a read never leaves the bound
        // range; a 16-byte group is whole inside it by the host's check (`SOURCE_ALIGN`).
        if SOURCE_ALIGN == 16u {
            return Row(input4[byte / 16u], word_if(word + 4u, count > 16u));
        }
        return Row(
            vec4(input[word], word_if(word + 1u, count > 4u), word_if(word + 2u, count > 8u),
                word_if(word + 3u, count > 12u)),
            word_if(word + 4u, count > 16u),
        );
    }
    let left = vec4(count, count - min(count, 4u), count - min(count, 8u), count - min(count, 12u));
    return Row(
        vec4(gathered_word(x0, y, left.x), gathered_word(x0 + 4u, y, left.y),
            gathered_word(x0 + 8u, y, left.z), gathered_word(x0 + 12u, y, left.w)),
        gathered_word(x0 + 16u, y, count - min(count, 16u)),
    );
}

// The four pixels of a packed word, one per lane.
fn bytes(word: u32) -> vec4<u32> {
    return (vec4(word) >> vec4(0u, 8u, 16u, 24u)) & vec4(0xffu);
}

// The nine taps of the four windows whose top-left pixels are the four pixels of one word of
// three rows: tap t of window i, row-major, is lane i of `t[t]`.
struct Taps {
    t0: vec4<u32>, t1: vec4<u32>, t2: vec4<u32>,
    t3: vec4<u32>, t4: vec4<u32>, t5: vec4<u32>,
    t6: vec4<u32>, t7: vec4<u32>, t8: vec4<u32>,
}

// `low` is a word of each of the three rows and `high` the word after it.
fn taps(low: vec3<u32>, high: vec3<u32>) -> Taps {
    let a = bytes(low.x);
    let b = bytes(high.x);
    let c = bytes(low.y);
    let d = bytes(high.y);
    let e = bytes(low.z);
    let f = bytes(high.z);
    return Taps(
        a, vec4(a.yzw, b.x), vec4(a.zw, b.xy),
        c, vec4(c.yzw, d.x), vec4(c.zw, d.xy),
        e, vec4(e.yzw, f.x), vec4(e.zw, f.xy),
    );
}

// ---- The arithmetic, per pixel (four pixels a lane each): the CPU twin's ----

// Exact: |weights| <= 65536, so nine products of a byte fit i32 with room to spare.
fn integer_sum(t: Taps, k: u32) -> vec4<i32> {
    let w0 = params.integer_weights[k * 3u];
    let w1 = params.integer_weights[k * 3u + 1u];
    let w2 = params.integer_weights[k * 3u + 2u];
    return vec4<i32>(t.t0) * w0.x + vec4<i32>(t.t1) * w0.y + vec4<i32>(t.t2) * w0.z
        + vec4<i32>(t.t3) * w0.w + vec4<i32>(t.t4) * w1.x + vec4<i32>(t.t5) * w1.y
        + vec4<i32>(t.t6) * w1.z + vec4<i32>(t.t7) * w1.w + vec4<i32>(t.t8) * w2.x;
}

fn integer_response(t: Taps, k: u32) -> vec4<u32> {
    return vec4<u32>(min(abs(integer_sum(t, k)), vec4(255i)));
}

// Summed in f32 in row-major tap order.
fn float_sum(t: Taps, k: u32) -> vec4<f32> {
    let w0 = params.weights[k * 3u];
    let w1 = params.weights[k * 3u + 1u];
    let w2 = params.weights[k * 3u + 2u];
    var sum = vec4<f32>(t.t0) * w0.x;
    sum += vec4<f32>(t.t1) * w0.y;
    sum += vec4<f32>(t.t2) * w0.z;
    sum += vec4<f32>(t.t3) * w0.w;
    sum += vec4<f32>(t.t4) * w1.x;
    sum += vec4<f32>(t.t5) * w1.y;
    sum += vec4<f32>(t.t6) * w1.z;
    sum += vec4<f32>(t.t7) * w1.w;
    sum += vec4<f32>(t.t8) * w2.x;
    return sum;
}

// round() in WGSL rounds half to even, like f32::round_ties_even on the CPU.
fn float_response(t: Taps, k: u32) -> vec4<u32> {
    return vec4<u32>(min(round(abs(float_sum(t, k))), vec4(255.0)));
}

// Kernel k's unclipped sums (MODE_SUMS) as the bits of the words they are stored in.
fn sum_bits(t: Taps, k: u32) -> vec4<u32> {
    if (INTEGER_MASK & (1u << k)) != 0u {
        return bitcast<vec4<u32>>(integer_sum(t, k));
    }
    return bitcast<vec4<u32>>(float_sum(t, k));
}

fn response(t: Taps, k: u32) -> vec4<u32> {
    if (INTEGER_MASK & (1u << k)) != 0u {
        return integer_response(t, k);
    }
    return float_response(t, k);
}

fn combine(vertical: vec4<u32>, horizontal: vec4<u32>) -> vec4<u32> {
    let sum = vertical + horizontal;
    if MODE == MODE_EDGE {
        return min(sum, vec4(255u));
    }
    return select(vec4(0u), vec4(255u), sum >= vec4(params.threshold));
}

fn pack(pixels: vec4<u32>) -> u32 {
    return pixels.x | (pixels.y << 8u) | (pixels.z << 16u) | (pixels.w << 24u);
}

// ---- Storing results ----

// One word of `lanes` (1 to 4) pixels at byte `byte` of the target buffer.
fn store_word(byte: u32, lanes: u32, packed: u32) {
    let word = byte / 4u;
    if lanes >= 4u {
        output[word] = packed;
    } else if lanes > 0u {
        // The row's last word: bytes past the image belong to the caller, keep them.
        let keep = 0xffffffffu << (lanes * 8u);
        output[word] = (output[word] & keep) | (packed & ~keep);
    }
}

fn store_texels(x: u32, y: u32, plane: u32, lanes: u32, packed: u32) {
    for (var lane = 0u; lane < min(lanes, 4u); lane++) {
        let value = (packed >> (lane * 8u)) & 0xffu;
        if TARGET_KIND == TARGET_TEXTURE_RGBA8 {
            let gray = f32(value) / 255.0;
            textureStore(output_rgba8, vec2<u32>(x + lane, y), plane, vec4(gray, gray, gray, 1.0));
        } else {
            textureStore(output_r32uint, vec2<u32>(x + lane, y), plane, vec4(value, 0u, 0u, 1u));
        }
    }
}

// Writes the `lanes` (1 to 16) pixels packed in `packed` at (x0, y) of output image `plane`.
fn store_pixels(plane: u32, x0: u32, y: u32, lanes: u32, packed: vec4<u32>) {
    let left = vec4(lanes, lanes - min(lanes, 4u), lanes - min(lanes, 8u), lanes - min(lanes, 12u));
    if TARGET_KIND == TARGET_BUFFER {
        let byte = params.out_offset + plane * params.bytes_per_image + y * params.out_bytes_per_row + x0;
        if TARGET_ALIGN == 16u {
            let group = byte / 16u;
            if lanes == COLUMNS {
                output4[group] = packed;
                return;
            }
            // The row's last group: this invocation owns all 16 bytes (rows start on 16 bytes),
            // and the bytes past the image belong to the caller, so they are kept.
            let keep = select(vec4(0xffffffffu) << (min(left, vec4(3u)) * 8u), vec4(0u),
                left >= vec4(4u));
            output4[group] = (output4[group] & keep) | (packed & ~keep);
            return;
        }
        store_word(byte, left.x, packed.x);
        store_word(byte + 4u, left.y, packed.y);
        store_word(byte + 8u, left.z, packed.z);
        store_word(byte + 12u, left.w, packed.w);
        return;
    }
    store_texels(x0, y, plane, left.x, packed.x);
    store_texels(x0 + 4u, y, plane, left.y, packed.y);
    store_texels(x0 + 8u, y, plane, left.z, packed.z);
    store_texels(x0 + 12u, y, plane, left.w, packed.w);
}

// Writes the `lanes` (1 to 16) sums of `sums` (pixel i in lane i % 4 of sums[i / 4]) at (x0, y)
// of output plane `plane`, a word a pixel (MODE_SUMS; buffer targets only).
fn store_sums(plane: u32, x0: u32, y: u32, lanes: u32, sums: array<vec4<u32>, 4>) {
    var words = sums;
    let first = (params.out_offset + plane * params.bytes_per_image + y * params.out_bytes_per_row)
        / 4u + x0;
    if TARGET_ALIGN == 16u {
        // Rows start on 16 bytes and x0 is a multiple of 16 pixels, so `first` starts a group.
        // In the row's last group, the words past the image belong to the caller: kept.
        for (var g = 0u; g < 4u; g++) {
            let left = lanes - min(lanes, g * 4u);
            if left >= 4u {
                output4[first / 4u + g] = words[g];
            } else if left > 0u {
                let keep = vec4(left) <= vec4(0u, 1u, 2u, 3u);
                output4[first / 4u + g] = select(words[g], output4[first / 4u + g], keep);
            }
        }
        return;
    }
    for (var i = 0u; i < lanes; i++) {
        output[first + i] = words[i / 4u][i % 4u];
    }
}

// ---- The kernel ----

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    // Dispatches past 65535 workgroups spill into y; fold them back into one index.
    let index = id.x + id.y * groups.x * WORKGROUP_SIZE;
    let row_groups = (params.out_height + ROWS - 1u) / ROWS;
    if index >= params.groups_per_row * row_groups {
        return;
    }
    let first_y = (index / params.groups_per_row) * ROWS;
    let last_y = min(first_y + ROWS, params.out_height);
    let x0 = (index % params.groups_per_row) * COLUMNS;
    let lanes = min(COLUMNS, params.out_width - x0);

    // Each input row is fetched once per invocation: the window moves down a row at a time,
    // keeping the two rows it shares with the one above.
    var top = fetch_row(x0, first_y, lanes + 2u);
    var middle = fetch_row(x0, first_y + 1u, lanes + 2u);
    for (var y = first_y; y < last_y; y++) {
        let bottom = fetch_row(x0, y + 2u, lanes + 2u);
        filter_row(top, middle, bottom, x0, y, lanes);
        top = middle;
        middle = bottom;
    }
}

// The `lanes` output pixels of row y from x0 whose windows are rows a, b, c, for every kernel,
// stored in every output image.
fn filter_row(a: Row, b: Row, c: Row, x0: u32, y: u32, lanes: u32) {
    let t0 = taps(vec3(a.words.x, b.words.x, c.words.x), vec3(a.words.y, b.words.y, c.words.y));
    let t1 = taps(vec3(a.words.y, b.words.y, c.words.y), vec3(a.words.z, b.words.z, c.words.z));
    let t2 = taps(vec3(a.words.z, b.words.z, c.words.z), vec3(a.words.w, b.words.w, c.words.w));
    let t3 = taps(vec3(a.words.w, b.words.w, c.words.w), vec3(a.tail, b.tail, c.tail));
    if MODE == MODE_SUMS {
        for (var k = 0u; k < KERNEL_COUNT; k++) {
            store_sums(k, x0, y, lanes,
                array(sum_bits(t0, k), sum_bits(t1, k), sum_bits(t2, k), sum_bits(t3, k)));
        }
        return;
    }
    let combined = MODE != MODE_RESPONSES;
    let first_response_plane = select(0u, 1u, combined);
    // The first two responses, kept for `combine`.
    var vertical: array<vec4<u32>, 4>;
    var horizontal: array<vec4<u32>, 4>;
    for (var k = 0u; k < KERNEL_COUNT; k++) {
        let r0 = response(t0, k);
        let r1 = response(t1, k);
        let r2 = response(t2, k);
        let r3 = response(t3, k);
        if k == 0u {
            vertical = array(r0, r1, r2, r3);
        } else if k == 1u {
            horizontal = array(r0, r1, r2, r3);
        }
        if !combined || WRITE_RESPONSES {
            store_pixels(first_response_plane + k, x0, y, lanes,
                vec4(pack(r0), pack(r1), pack(r2), pack(r3)));
        }
    }
    if combined {
        store_pixels(0u, x0, y, lanes, vec4(
            pack(combine(vertical[0], horizontal[0])), pack(combine(vertical[1], horizontal[1])),
            pack(combine(vertical[2], horizontal[2])), pack(combine(vertical[3], horizontal[3]))));
    }
}
