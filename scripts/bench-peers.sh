#!/usr/bin/env bash
# Compares gpuconv with OpenCV, scipy and numpy on the same images in one run, and writes
# BENCHMARKS.md. Uses the peer harness in ../shared/bench (PEERS_DIR to point elsewhere), whose
# Python requirements it installs into target/peers-venv on first use (about 110 MB).
#
#   bash scripts/bench-peers.sh                    # 4096x4096 and 16384x16384
#   SIZES="4096x4096" bash scripts/bench-peers.sh
#
# Then start-up (gpuconv bench --startup) and the whole CLI on one large PNG per backend
# (bench/cli_large.py; LARGE=32768x32768 by default, LARGE= to skip; BACKENDS=cpu,gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
peers=${PEERS_DIR:-../shared/bench}
venv=${PEERS_VENV:-target/peers-venv}
sizes=${SIZES:-4096x4096 16384x16384}
out=$PWD/target/bench
[ -f "$peers/peers.py" ] || { echo "no peer harness at $peers/peers.py (set PEERS_DIR)" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$peers/requirements.txt"
fi
venv=$(realpath -m "$venv")
cargo build --release
rm -rf "$out" && mkdir -p "$out"
bin=$PWD/target/release/gpuconv
lift_pillow_limit='import runpy, sys, PIL.Image
PIL.Image.MAX_IMAGE_PIXELS = None
sys.argv[0] = "peers.py"
sys.path.insert(0, ".")
runpy.run_path("peers.py", run_name="__main__")'
for size in $sizes; do
    width=${size%x*} height=${size#*x}
    # The peers' own synthetic image, so that every tool times the same pixels.
    "$venv/bin/python" - "$peers" "$height" "$width" "$out/input-$size.pgm" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from peers import synthetic_image
from filters import write_gray
write_gray(sys.argv[4], synthetic_image(int(sys.argv[2]), int(sys.argv[3])))
PY
    repeat=11
    [ "$width" -gt 8192 ] && repeat=7
    for threads in 1 2; do
        RAYON_NUM_THREADS=$threads "$bin" bench --input "$out/input-$size.pgm" --backend cpu \
            --ops vertical,edge --repeat "$repeat" --json "$out/gpuconv-$size-$threads.json"
    done
    peer_list=numpy,scipy,opencv-filter2d,opencv-sobel
    [ "$width" -gt 8192 ] && peer_list=opencv-filter2d,opencv-sobel
    # Pillow refuses images over 179 Mpx as possible decompression bombs, and the harness reads
    # every output with Pillow: lift that limit inside the harness's own process.
    (cd "$peers" && "$venv/bin/python" -c "$lift_pillow_limit" --synthetic "${height}x${width}" --process-format pgm \
        --peers "$peer_list" --ops v,edge --repeat "$repeat" \
        --external "v=$bin filter {in} -k vertical -o {out} --backend cpu" \
        --external "edge=$bin filter {in} --edge -o {out} --backend cpu" \
        --json "$out/peers-$size.json") | tee "$out/peers-$size.txt"
done
"$bin" bench --startup --repeat 11 --json "$out/startup.json"
large=${LARGE-32768x32768}
if [ -n "$large" ]; then
    "$venv/bin/python" bench/cli_large.py --bin "$bin" --size "$large" \
        --backends "${BACKENDS:-cpu,gpu}" --out "$out"
fi
# Streaming against the whole-image path (WHOLE_BIN: a build before streaming) and libvips.
"$venv/bin/pip" install -q pyvips pyvips-binary
"$venv/bin/python" bench/streaming.py --bin "$bin" ${WHOLE_BIN:+--whole-bin "$WHOLE_BIN"} \
    --sizes "${STREAM_SIZES:-4096x4096,16384x16384,32768x32768}" --out "$out"
# Video frames against ffmpeg's convolution filter.
bash bench/frames.sh
# A folder of 1000 one-megapixel PNGs, against xargs -P and OpenCV in Python.
PYTHON="$venv/bin/python" bash bench/batch.sh
# The service under load (hey), against a minimal Python + OpenCV service.
PYTHON="$venv/bin/python" bash bench/serve.sh
python3 bench/compare.py "$out" > BENCHMARKS.md
echo "wrote BENCHMARKS.md"
