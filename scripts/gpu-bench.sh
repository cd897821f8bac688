#!/usr/bin/env bash
# On a machine with a real GPU: build gpuconv (or use GPUCONV_BIN), check every GPU result
# against the CPU backend bit for bit, and time the GPU path stage by stage. Exits non-zero if
# any GPU output differs. Results go to $OUT (the device tool's output folder) or target/gpu-bench.
#
# With this workplace's device tool, carry `.gl` (the Vulkan loader packages, see the tool's
# README) and a release binary built here, then run:
#   GPUCONV_BIN=target/release/gpuconv bash scripts/gpu-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-target/gpu-bench}
mkdir -p "$out"
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
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null | tee "$out/gpu.txt" || true
"$bin" info | tee "$out/info.txt"
"$bin" bench --backend both --sizes "${SIZES:-1024x1024,4096x4096,16384x16384}" --ops vertical,edge \
    --repeat "${REPEAT:-11}" --json "$out/gpu-bench.json" | tee "$out/gpu-bench.txt"
# The same 256-Mpx edge image in strips of 1024 and 4096 rows (several in flight) against the
# engine's own choice above: what overlapping strips buys on this GPU.
for rows in 1024 4096; do
    "$bin" bench --backend gpu --sizes 16384x16384 --ops edge --repeat "${REPEAT:-11}" \
        --strip-rows "$rows" --json "$out/gpu-strips-$rows.json" | tee -a "$out/gpu-bench.txt"
done
"$bin" bench --startup --backend gpu --repeat 11 --json "$out/startup.json" | tee "$out/startup.txt"
if grep -E '^ .*(gpu|cpu) \(' "$out/gpu-bench.txt" | grep -vqE ' ok$'; then
    echo "gpu-bench: some outputs differ from the CPU backend or failed (see above)" >&2
    exit 1
fi
echo "gpu-bench: every output equals the CPU backend bit for bit"
