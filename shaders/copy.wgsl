// The yardstick for the convolution kernel (src/gpu/yardstick.rs): a plain copy, one `vec4<u32>`
// (16 bytes) read and written per invocation. A 3×3 filter on bytes reads each input byte once and
// writes each output byte once, so a well-written one runs close to this copy over the same bytes.

const WORKGROUP_SIZE: u32 = 64u;

@group(0) @binding(0) var<storage, read> source: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> destination: array<vec4<u32>>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    // Dispatches past 65535 workgroups spill into y; fold them back into one index.
    let index = id.x + id.y * groups.x * WORKGROUP_SIZE;
    if index < arrayLength(&destination) {
        destination[index] = source[index];
    }
}
