#!/usr/bin/env bash
# gpuconv stream against ffmpeg's own convolution filter on the same 1080p gray frames: frames per
# second of the whole process, median of REPEAT runs, one thread and two (and the GPU when
# BACKENDS includes gpu). The 3x3 kernel is the lesson's vertical Sobel for both; ffmpeg's
# filter keeps the frame's size and clips negative sums to 0 where gpuconv takes |sum| and
# writes the valid (W-2)x(H-2) part, so the outputs differ at the borders and in sign: this
# times the same work, it does not compare bits (tests/frames.rs does that through ffmpeg).
#
#   bash bench/frames.sh                 # writes target/bench/frames.json and prints a table
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${GPUCONV_BIN:-target/release/gpuconv}
frames=${FRAMES:-300}
repeat=${REPEAT:-5}
size=1920x1080
out=target/bench
mkdir -p "$out"
[ -x "$bin" ] || cargo build --release
input="$out/frames-$size.gray"
if [ ! -f "$input" ] || [ "$(stat -c %s "$input")" -ne $((1920 * 1080 * frames)) ]; then
    ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=$size:rate=30" \
        -frames:v "$frames" -f rawvideo -pix_fmt gray "$input"
fi
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_it() {  # seconds of one run of "$@", output to /dev/null
    local start end
    start=$(date +%s.%N)
    "$@" > /dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}
results=()
run() {  # name threads command...
    local name=$1 threads=$2
    shift 2
    local seconds
    seconds=$(printf '%.6f' "$(for _ in $(seq "$repeat"); do time_it "$@"; done | median)")
    local fps
    fps=$(printf '%.3f' "$(echo "$frames / $seconds" | bc -l)")
    printf '%-44s %2s threads  %7.3f s  %7.1f frames/s\n' "$name" "$threads" "$seconds" "$fps"
    results+=("{\"tool\": \"$name\", \"threads\": $threads, \"seconds\": $seconds, \"fps\": $fps}")
}
kernel='1 0 -1 2 0 -2 1 0 -1'
for threads in 1 2; do
    run "ffmpeg convolution" "$threads" ffmpeg -hide_banner -loglevel error -threads "$threads" \
        -filter_threads "$threads" -f rawvideo -pix_fmt gray -s "$size" -i "$input" \
        -vf "convolution=0m='$kernel':0rdiv=1:0bias=0" -f rawvideo -pix_fmt gray -
    run "gpuconv stream, cpu" "$threads" env RAYON_NUM_THREADS="$threads" \
        bash -c "'$bin' stream --size $size -k vertical --backend cpu < '$input'"
done
for backend in ${BACKENDS:-cpu}; do
    [ "$backend" = gpu ] || continue
    run "gpuconv stream, gpu" 2 \
        bash -c "'$bin' stream --size $size -k vertical --backend gpu < '$input'"
done
machine=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
printf '{"machine": "%s", "cpus": %s, "frames": %s, "size": "%s", "ffmpeg": "%s", "results": [%s]}\n' \
    "$machine" "$(nproc)" "$frames" "$size" "$(ffmpeg -version | head -1 | cut -d' ' -f3)" \
    "$(IFS=,; echo "${results[*]}")" > "$out/frames.json"
echo "wrote $out/frames.json"
