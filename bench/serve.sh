#!/usr/bin/env bash
# `gpuconv serve` under load: one-megapixel PNGs posted by `hey` at concurrency 1, 8 and 32, on
# loopback only, each run bounded in count (REQUESTS, at least 20 per client) and time (120 s);
# the same load on bench/serve_opencv.py, a minimal Python service doing the same job with
# OpenCV. Both answers are first checked to hold the same pixels.
#
#   bash bench/serve.sh                 # CPU backend; writes target/bench/serve.json
#   BACKEND=gpu bash bench/serve.sh     # the GPU backend too (on a machine with a GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${GPUCONV_BIN:-target/release/gpuconv}")
python=${PYTHON:-target/peers-venv/bin/python}
requests=${REQUESTS:-300}
backends=${BACKEND:-cpu}
work=target/bench/serve
out=target/bench
mkdir -p "$work"
command -v hey >/dev/null || { echo "bench/serve.sh: needs hey (apt install hey)" >&2; exit 1; }
[ -x "$bin" ] || cargo build --release

"$python" - "$work/photo.png" <<'PY'
import sys
import numpy as np
from PIL import Image
# Shading, hard-edged blocks and a little noise, as in bench/batch.sh: 1000x1000.
y, x = np.mgrid[0:1000, 0:1000]
rng = np.random.default_rng(7)
image = 60 + x % 200 // 2 + 50 * ((x // 97 + y // 61) % 3 == 0) + rng.integers(0, 8, x.shape)
Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(sys.argv[1], compress_level=1)
PY

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() {  # url: until it answers at all
    for _ in $(seq 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" != 000 ] && return 0
        sleep 0.1
    done
    echo "bench/serve.sh: nothing answers at $1" >&2
    exit 1
}

declare -A urls
names=()
for backend in $backends; do
    port=$(free_port)
    "$bin" serve --backend "$backend" --bind "127.0.0.1:$port" --quiet &
    pids+=($!)
    wait_for "http://127.0.0.1:$port/readyz"
    urls["gpuconv serve, $backend backend"]="http://127.0.0.1:$port/v1/filter?edge=true"
    names+=("gpuconv serve, $backend backend")
done
port=$(free_port)
"$python" bench/serve_opencv.py "$port" &
pids+=($!)
wait_for "http://127.0.0.1:$port/"
urls["python + OpenCV (ThreadingHTTPServer)"]="http://127.0.0.1:$port/v1/filter"
names+=("python + OpenCV (ThreadingHTTPServer)")

# The same pixels from every service.
i=0
for name in "${names[@]}"; do
    curl -sf --data-binary @"$work/photo.png" -H 'Content-Type: image/png' -o "$work/answer-$i.png" "${urls[$name]}"
    i=$((i + 1))
done
"$python" - "$work" <<'PY'
import sys, pathlib
import numpy as np
from PIL import Image
answers = sorted(pathlib.Path(sys.argv[1]).glob("answer-*.png"))
first = np.asarray(Image.open(answers[0]))
assert first.shape == (998, 998), first.shape
for other in answers[1:]:
    assert np.array_equal(first, np.asarray(Image.open(other))), other
print(f"answers agree ({len(answers)} services, 998x998 edge images)")
PY

results=()
for name in "${names[@]}"; do
    for concurrency in 1 8 32; do
        count=$(( requests > 20 * concurrency ? requests : 20 * concurrency ))
        # hey gives each client n / c requests.
        count=$(( count / concurrency * concurrency ))
        # Warm-up: connections, caches, the engine's buffers.
        timeout 120 hey -n $((2 * concurrency)) -c "$concurrency" -m POST -T image/png \
            -D "$work/photo.png" "${urls[$name]}" >/dev/null
        report="$work/hey-$(echo "$name-$concurrency" | tr -c 'a-zA-Z0-9\n' '-').txt"
        timeout 120 hey -n "$count" -c "$concurrency" -t 60 -m POST -T image/png \
            -D "$work/photo.png" "${urls[$name]}" > "$report"
        rps=$(awk '/Requests\/sec:/ {print $2}' "$report")
        p50=$(awk '/ 50% in/ {print $3 * 1000}' "$report")
        p90=$(awk '/ 90% in/ {print $3 * 1000}' "$report")
        p99=$(awk '/ 99% in/ {print $3 * 1000}' "$report")
        ok=$(awk '/\[200\]/ {print $2}' "$report")
        [ "${ok:-0}" -eq "$count" ] || { echo "$name at $concurrency: $ok of $count answered 200" >&2; cat "$report" >&2; exit 1; }
        printf '%-40s c=%-3s %5d requests %8.1f req/s  p50 %7.1f ms  p90 %7.1f ms  p99 %7.1f ms\n' \
            "$name" "$concurrency" "$count" "$rps" "$p50" "$p90" "$p99"
        results+=("{\"service\": \"$name\", \"concurrency\": $concurrency, \"requests\": $count, \"rps\": $rps, \"p50_ms\": $p50, \"p90_ms\": $p90, \"p99_ms\": $p99}")
    done
done
printf '{"machine": "%s", "cpus": %s, "image": "1000x1000 PNG, %s bytes", "results": [%s]}\n' \
    "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(nproc)" "$(stat -c %s "$work/photo.png")" \
    "$(IFS=,; echo "${results[*]}")" > "$out/serve.json"
echo "wrote $out/serve.json"
