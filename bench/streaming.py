#!/usr/bin/env python3
"""The lesson's edge image of a large PNG, file to file, by whole programs in fresh processes:
gpuconv streaming (this build), gpuconv's whole-image path (an older build, `--whole-bin`), and
libvips (pyvips, sequential access). Wall time and each process's own peak resident memory
(VmHWM, as each reports it), median of `--repeat`; every output checked against a numpy reference.

    python bench/streaming.py --bin target/release/gpuconv --whole-bin /tmp/old/gpuconv \
        --sizes 4096x4096,16384x16384,32768x32768 --out target/bench
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from cli_large import matches_reference, synthetic  # noqa: E402

Image.MAX_IMAGE_PIXELS = None

VIPS = """
import sys, pyvips
source, target = sys.argv[1], sys.argv[2]
image = pyvips.Image.new_from_file(source, access="sequential")
# Signed samples: on uchar input vips's conv answers in uchar, negative sums clipped to 0.
signed = image.cast("short")
def response(rows):
    mask = pyvips.Image.new_from_array(rows, scale=1, offset=0)
    # vips convolves with the mask as given; |.| makes the lesson's cross-correlation equal.
    return signed.conv(mask, precision="integer").abs().cast("int")
vertical = response([[1, 0, -1], [2, 0, -2], [1, 0, -1]])
horizontal = response([[1, 2, 1], [0, 0, 0], [-1, -2, -1]])
clip = lambda r: (r > 255).ifthenelse(255, r)
edge = clip(clip(vertical) + clip(horizontal)).cast("uchar")
edge.crop(1, 1, image.width - 2, image.height - 2).write_to_file(target, compression=1)
peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(f"peak resident memory: {int(peak.split()[1]) / 1024:.0f} MiB", file=sys.stderr)
"""


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one fresh process, as the process itself reports
    it (VmHWM): a child's rusage would count this process's own pages, shared at fork."""
    start = time.perf_counter()
    process = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        sys.exit(f"{command[0]} failed: {process.stderr}")
    peak = re.search(r"peak resident memory: ([0-9.]+) MiB", process.stderr)
    return wall, float(peak.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default="target/release/gpuconv")
    parser.add_argument("--whole-bin", help="a gpuconv build without streaming, to compare")
    parser.add_argument("--sizes", default="4096x4096,16384x16384")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gpu-sizes", default="", help="sizes also run with --backend gpu")
    parser.add_argument("--out", default="target/bench", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes.split(","):
        width, height = map(int, size.split("x"))
        source = args.out / f"stream-{size}.png"
        image = synthetic(height, width)
        Image.fromarray(image).save(source, compress_level=1)
        tools = {"gpuconv cpu (streaming)": [args.bin, "filter", str(source), "--edge", "--backend", "cpu", "--timings", "-o"]}
        if size in args.gpu_sizes.split(","):
            tools["gpuconv gpu (streaming)"] = [args.bin, "filter", str(source), "--edge", "--backend", "gpu", "--timings", "-o"]
        if args.whole_bin:
            tools["gpuconv cpu (whole image)"] = [args.whole_bin, "filter", str(source), "--edge", "--backend", "cpu", "--timings", "-o"]
        tools["libvips (pyvips)"] = [sys.executable, "-c", VIPS, str(source)]
        for name, command in tools.items():
            target = args.out / f"stream-{size}-edge.png"
            runs = [measure(command + [str(target)]) for _ in range(args.repeat)]
            correct = matches_reference(target, image)
            target.unlink()
            row = {
                "size": size,
                "tool": name,
                "wall_s": statistics.median(w for w, _ in runs),
                "peak_rss_mib": statistics.median(m for _, m in runs),
                "matches_reference": bool(correct),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
            if not correct:
                sys.exit(f"{name} on {size}: output differs from the reference")
        source.unlink()
    (args.out / "streaming.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
