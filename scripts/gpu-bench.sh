#!/usr/bin/env bash
# On a machine with a real GPU, in one call of a few minutes: check every GPU result against the
# CPU backend bit for bit, and measure the kernel against the card's own copy. Exits non-zero if
# any output differs or a check fails. Everything is written to target/gpu-bench (and the
# summaries to $OUT, the device tool's output folder, when it is set).
#
# It measures, in one run:
#   1. the yardstick: the card's name and rated memory bandwidth, a WGSL copy kernel
#      (vec4<u32> reads and writes) and copy_buffer_to_buffer, both timed with GPU timestamps,
#      and the old wall-clock copy figure beside them;
#   2. both backends at 1, 16 and 256 Mpx, from host memory and back, every stage: vertical,
#      edge, and eight kernels at once (every response written); and the same operations over
#      buffers and textures already on the GPU (prepare -> encode: buffer, RGBA and sRGB
#      textures in; buffer, R32Uint and RGBA8 textures out), each read back and checked, with
#      its share of the copy kernel's bandwidth and its ratio to the CPU backend;
#   3. output rows per invocation 1, 2, 4 and 8 at 256 Mpx (the engine's default is chosen
#      from this);
#   4. start-up per backend (and what `auto` picks for a small image);
#   5. the whole CLI on a 1-gigapixel PGM to PGM, median of 3, per backend (PNG's encoder is
#      single-threaded and would hide the filter), checked against numpy;
#   6. `gpuconv stream` frames per second on 1080p frames, per backend, outputs compared;
#   7. every shader variant against the reference, when a test binary built here is given
#      (VARIANTS_BIN, from `cargo test --release --no-run --test variants`).
#
# With this workplace's device tool, carry `.gl` (the Vulkan loader packages, see the tool's
# README) and `.devbin` (a release binary and the variants test built here), then run:
#   GPUCONV_BIN=.devbin/gpuconv VARIANTS_BIN=.devbin/variants bash scripts/gpu-bench.sh
# SIZES, ROWS_SIZE, LARGE (empty to skip), FRAMES and REPEAT shrink it for a dry run.
set -euo pipefail
cd "$(dirname "$0")/.."
work=target/gpu-bench
rm -rf "$work" && mkdir -p "$work"
out=$work
if [ -d .gl ] && ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
bin=${GPUCONV_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release
    bin=target/release/gpuconv
fi
repeat=${REPEAT:-7}
log="$out/gpu-bench.txt"
failed=0
step() { echo "== $* ($(date +%T))" | tee -a "$log"; }

step "card and driver"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv 2>/dev/null \
    | tee -a "$log" || true
"$bin" info | tee -a "$log"

eight=vertical+horizontal+x+identity+vertical+horizontal+x+identity
step "1-2. yardstick, host and GPU-resident paths, both backends"
"$bin" bench --backend both --sizes "${SIZES:-1024x1024,4096x4096,16384x16384}" \
    --ops "vertical,edge,$eight" --repeat "$repeat" --json "$out/gpu-bench.json" | tee -a "$log"

step "3. output rows per invocation"
for rows in 1 2 4 8; do
    "$bin" bench --backend gpu --sizes "${ROWS_SIZE:-16384x16384}" --ops vertical,edge \
        --repeat "$repeat" --rows-per-invocation "$rows" --no-resident \
        --json "$out/gpu-rows-$rows.json" | tee -a "$log"
done

step "4. start-up"
"$bin" bench --startup --repeat 11 --json "$out/startup.json" | tee -a "$log"

large=${LARGE-32768x32768}
if [ -n "$large" ]; then
    step "5. the whole CLI, PGM to PGM, $large"
    python3 bench/cli_large.py --bin "$bin" --size "$large" --format pgm --repeat 3 \
        --backends cpu,gpu --out "$out/large" | tee -a "$log" || failed=1
fi

step "6. gpuconv stream, 1080p frames"
python3 bench/stream_fps.py --bin "$bin" --frames "${FRAMES:-300}" --repeat 3 \
    --backends cpu,gpu --out "$out/frames" | tee -a "$log" || failed=1

if [ -n "${VARIANTS_BIN:-}" ]; then
    step "7. every shader variant against the reference"
    "$VARIANTS_BIN" --test-threads 1 2>&1 | tee -a "$log" || failed=1
fi

# Named as bench/results/ keeps them: gpu-<card>-<date>.*
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 \
    | tr 'A-Z' 'a-z' | sed 's/nvidia //; s/[^a-z0-9]\+/-/g; s/-$//')
tag="gpu-${card:-unknown}-$(date +%F)"
for file in "$log" "$out/gpu-bench.json" "$out/startup.json" "$out/large/cli-large.json" \
    "$out/frames/stream-fps.json"; do
    [ -f "$file" ] || continue
    name=$(basename "$file")
    case $name in
        gpu-bench.txt) cp "$file" "$work/$tag.txt" ;;
        gpu-bench.json) cp "$file" "$work/$tag.json" ;;
        *) cp "$file" "$work/$tag-$name" ;;
    esac
done
if [ -n "${OUT:-}" ]; then
    cp "$work/$tag"* "$OUT/"
    tar -C "$work" -czf "$OUT/$tag-all.tar.gz" --exclude='*.pgm' --exclude='*.gray' .
fi
if grep -E ' (gpu|cpu)[ (]' "$log" | grep -E '^ +[0-9]+x[0-9]+' | grep -vqE ' ok( |$)'; then
    echo "gpu-bench: some outputs differ from the CPU backend or failed (see above)" >&2
    exit 1
fi
if [ "$failed" -ne 0 ]; then
    echo "gpu-bench: a check failed (see above)" >&2
    exit 1
fi
echo "gpu-bench: every output equals the CPU backend bit for bit"
