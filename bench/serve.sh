#!/usr/bin/env bash
# `gpuconv serve` under load: one-megapixel PNGs posted by `hey` at concurrency 1, 8 and 32, on
# loopback only, each run bounded in count (REQUESTS, at least 20 per client) and time (120 s);
# the same load on bench/serve_opencv.py, a minimal Python service doing the same job with
# OpenCV. Both answers are first checked to hold the same pixels. REPEAT rounds (3), medians.
#
#   bash bench/serve.sh                         # CPU backend; writes target/bench/serve.json
#   BACKEND="cpu gpu" bash bench/serve.sh       # the GPU backend too (on a machine with a GPU)
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

# REPEAT rounds, the services taking turns within each, so that a noisy spell of a shared
# machine falls on all of them; each figure is the median over the rounds.
rounds=${REPEAT:-3}
rm -f "$work"/hey-*.txt
for round in $(seq "$rounds"); do
    for concurrency in 1 8 32; do
        for index in "${!names[@]}"; do
            name=${names[$index]}
            count=$(( requests > 20 * concurrency ? requests : 20 * concurrency ))
            # hey gives each client n / c requests.
            count=$(( count / concurrency * concurrency ))
            # Warm-up: connections, caches, the engine's buffers.
            timeout 120 hey -n $((2 * concurrency)) -c "$concurrency" -m POST -T image/png \
                -D "$work/photo.png" "${urls[$name]}" >/dev/null
            report="$work/hey-$index-$concurrency-$round.txt"
            timeout 120 hey -n "$count" -c "$concurrency" -t 60 -m POST -T image/png \
                -D "$work/photo.png" "${urls[$name]}" > "$report"
            ok=$(awk '/\[200\]/ {print $2}' "$report")
            [ "${ok:-0}" -eq "$count" ] || { echo "$name at $concurrency: $ok of $count answered 200" >&2; cat "$report" >&2; exit 1; }
            printf '%-40s c=%-3s round %s: %s\n' "$name" "$concurrency" "$round" "$(awk '/Requests\/sec:/ {print $2 " req/s"}' "$report")"
        done
    done
done
printf '%s\n' "${names[@]}" > "$work/names.txt"
"$python" - "$work" "$out/serve.json" "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(nproc)" <<'PY'
import json, pathlib, re, statistics, sys
work, out, machine, cpus = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
names = work.joinpath("names.txt").read_text().splitlines()
results = []
for index, name in enumerate(names):
    for concurrency in (1, 8, 32):
        runs = []
        for report in sorted(work.glob(f"hey-{index}-{concurrency}-*.txt")):
            text = report.read_text()
            latency = {p: float(re.search(rf" {p}% in ([0-9.]+) secs", text).group(1)) * 1000 for p in (50, 90, 99)}
            runs.append({"rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", text).group(1)),
                         "requests": int(re.search(r"\[200\]\s+(\d+) responses", text).group(1)), **latency})
        median = lambda key: statistics.median(r[key] for r in runs)
        row = {"service": name, "concurrency": concurrency, "requests": runs[0]["requests"], "rounds": len(runs),
               "rps": median("rps"), "p50_ms": median(50), "p90_ms": median(90), "p99_ms": median(99),
               "rps_range": [min(r["rps"] for r in runs), max(r["rps"] for r in runs)]}
        results.append(row)
        print(f"{name:40} c={concurrency:<3} {row['requests']:5d} requests x {len(runs)}: median {row['rps']:7.1f} req/s "
              f"(range {row['rps_range'][0]:.1f}-{row['rps_range'][1]:.1f})  p50 {row['p50_ms']:7.1f} ms  "
              f"p90 {row['p90_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms")
image = f"1000x1000 PNG, {work.joinpath('photo.png').stat().st_size} bytes"
json.dump({"machine": machine, "cpus": cpus, "image": image, "results": results}, open(out, "w"), indent=1)
PY
echo "wrote $out/serve.json"
