#!/usr/bin/env bash
# A folder of one-megapixel PNGs to their edge PNGs: gpuconv filter on the whole folder, against
# `xargs -P` running one gpuconv process per file and a Python script with OpenCV, on the same
# files. Files per second, median of REPEAT runs; every tool's outputs are checked to be equal.
#
#   bash bench/batch.sh            # COUNT=1000 files; writes target/bench/batch.json
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${GPUCONV_BIN:-target/release/gpuconv}")
python=${PYTHON:-target/peers-venv/bin/python}
count=${COUNT:-1000}
repeat=${REPEAT:-3}
work=target/bench/batch
out=target/bench
mkdir -p "$work/in"
if [ "$(find "$work/in" -name '*.png' | wc -l)" -ne "$count" ]; then
    rm -rf "$work/in" && mkdir -p "$work/in"
    "$python" - "$work/in" "$count" <<'PY'
import sys
import numpy as np
from PIL import Image
folder, count = sys.argv[1], int(sys.argv[2])
y, x = np.mgrid[0:1000, 0:1000]
for i in range(count):
    # Shading, hard-edged blocks and a little noise, different for each file.
    rng = np.random.default_rng(i)
    image = 60 + (x + 3 * i) % 200 // 2 + 50 * (((x + i) // 97 + y // 61) % 3 == 0) + rng.integers(0, 8, x.shape)
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(f"{folder}/img{i:04d}.png", compress_level=1)
PY
fi
cat > "$work/opencv_edges.py" <<'PY'
import sys, pathlib
import cv2
import numpy as np
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dst.mkdir(exist_ok=True)
v = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
h = v.T.copy()
for path in sorted(src.glob("*.png")):
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    a = cv2.convertScaleAbs(cv2.filter2D(image, cv2.CV_16S, v)[1:-1, 1:-1])
    b = cv2.convertScaleAbs(cv2.filter2D(image, cv2.CV_16S, h)[1:-1, 1:-1])
    cv2.imwrite(str(dst / f"{path.stem}-edge.png"), cv2.add(a, b), [cv2.IMWRITE_PNG_COMPRESSION, 1])
PY
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
results=()
run() {  # name command...
    local name=$1
    shift
    local times=()
    for _ in $(seq "$repeat"); do
        rm -rf "$work/out" && mkdir -p "$work/out"
        local start end
        start=$(date +%s.%N)
        "$@"
        end=$(date +%s.%N)
        times+=("$(echo "$end - $start" | bc -l)")
    done
    local seconds fps
    seconds=$(printf '%.3f' "$(printf '%s\n' "${times[@]}" | median)")
    fps=$(printf '%.1f' "$(echo "$count / $seconds" | bc -l)")
    [ "$(find "$work/out" -name '*.png' | wc -l)" -eq "$count" ] || { echo "$name wrote the wrong number of files" >&2; exit 1; }
    cp -r "$work/out" "$work/out-$(echo "$name" | tr -c 'a-z0-9\n' '-')"
    printf '%-40s %8.3f s %8.1f files/s\n' "$name" "$seconds" "$fps"
    results+=("{\"tool\": \"$name\", \"seconds\": $seconds, \"files_per_s\": $fps}")
}
cores=$(nproc)
run "gpuconv filter (one process)" "$bin" filter "$work"/in/*.png --edge -o "$work/out/" --backend cpu --quiet
run "xargs -P $cores, one gpuconv per file" bash -c \
    "cd '$work/in' && ls *.png | xargs -P $cores -I{} '$bin' filter {} --edge -o ../out/ --backend cpu --quiet"
run "python + OpenCV (one process)" "$python" "$work/opencv_edges.py" "$work/in" "$work/out"
# Every tool wrote the same pixels (PNG bytes may differ between encoders).
"$python" - "$work" <<'PY'
import sys, pathlib
import numpy as np
from PIL import Image
work = pathlib.Path(sys.argv[1])
outs = sorted(p for p in work.glob("out-*") if p.is_dir())
names = sorted(p.name for p in outs[0].glob("*.png"))
for name in names[:: max(1, len(names) // 50)]:
    first = np.asarray(Image.open(outs[0] / name))
    for other in outs[1:]:
        assert np.array_equal(first, np.asarray(Image.open(other / name))), (other, name)
print(f"outputs agree ({len(outs)} tools, {len(names)} files, every {max(1, len(names) // 50)}th checked)")
PY
rm -rf "$work"/out-*
printf '{"machine": "%s", "cpus": %s, "files": %s, "results": [%s]}\n' \
    "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$cores" "$count" \
    "$(IFS=,; echo "${results[*]}")" > "$out/batch.json"
echo "wrote $out/batch.json"
