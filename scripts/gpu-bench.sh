#!/usr/bin/env bash
# On a machine with a real GPU: build gpuconv (or use GPUCONV_BIN), check every GPU result
# against the CPU backend bit for bit, and time the GPU path stage by stage. Exits non-zero if
# any GPU output differs. Results go to target/gpu-bench (and to $OUT, the device tool's output
# folder, when it is set).
#
# It measures, in one run:
#   1. both backends at 1, 16 and 256 Mpx (vertical and edge), every stage, checked;
#   2. the shader's layout: output rows per invocation 1, 2, 4 and 8 on 256 Mpx, kernel time
#      from timestamps (the engine's default is chosen from this);
#   3. strips of 1024 and 4096 rows against the engine's own choice;
#   4. start-up, per backend;
#   5. the whole CLI, streaming a 1-gigapixel PNG to its edge PNG, per backend, peak memory
#      included (bench/cli_large.py; LARGE= to skip, needs numpy and Pillow).
#
# With this workplace's device tool, carry `.gl` (the Vulkan loader packages, see the tool's
# README) and a release binary built here, then run:
#   GPUCONV_BIN=.devbin/gpuconv bash scripts/gpu-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# Everything is written under $work; the device tool brings back at most eight files from
# $OUT, so there it gets the text summaries and one archive of the rest.
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
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null | tee "$out/gpu.txt" || true
"$bin" info | tee "$out/info.txt"
"$bin" bench --backend both --sizes "${SIZES:-1024x1024,4096x4096,16384x16384}" --ops vertical,edge \
    --repeat "$repeat" --json "$out/gpu-bench.json" | tee "$log"
for rows in 1 2 4 8; do
    "$bin" bench --backend gpu --sizes "${ROWS_SIZE:-16384x16384}" --ops vertical,edge --repeat "$repeat" \
        --rows-per-invocation "$rows" --json "$out/gpu-rows-$rows.json" | tee -a "$log"
done
# The same 256-Mpx edge image in strips of 1024 and 4096 rows (several in flight) against the
# engine's own choice above: what overlapping strips buys on this GPU.
for rows in 1024 4096; do
    "$bin" bench --backend gpu --sizes "${ROWS_SIZE:-16384x16384}" --ops edge --repeat "$repeat" \
        --strip-rows "$rows" --json "$out/gpu-strips-$rows.json" | tee -a "$log"
done
"$bin" bench --startup --backend gpu --repeat 11 --json "$out/startup.json" | tee "$out/startup.txt"
large=${LARGE-32768x32768}
if [ -n "$large" ] && python3 -c 'import numpy, PIL' 2>/dev/null; then
    python3 bench/cli_large.py --bin "$bin" --size "$large" --backends cpu,gpu --out "$out/large" \
        | tee "$out/cli-large.txt"
fi
if [ -n "${OUT:-}" ]; then
    cp "$log" "$out/startup.txt" "$out/info.txt" "$OUT/"
    [ -f "$out/cli-large.txt" ] && cp "$out/cli-large.txt" "$OUT/"
    tar -C "$work" -czf "$OUT/gpu-bench-results.tar.gz" .
fi
if grep -E '^ .*(gpu|cpu) \(' "$log" | grep -vqE ' ok$'; then
    echo "gpu-bench: some outputs differ from the CPU backend or failed (see above)" >&2
    exit 1
fi
echo "gpu-bench: every output equals the CPU backend bit for bit"
