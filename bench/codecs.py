#!/usr/bin/env python3
"""What image files cost the main job: a large PNG or PGM to its edge PNG, whole processes on
the CPU backend, a baseline build against this one (each `--compression`) and libvips (pyvips,
sequential, PNG level 1 without filters, as bench/streaming.py runs it), taking turns. Wall
time and peak RSS (medians of --repeat), output size, the decode time gpuconv reports with
--timings, and every output checked against a numpy reference (the baseline's too).

    python bench/codecs.py --base /tmp/base/gpuconv --bin target/release/gpuconv \
        --sizes 16384x16384 --repeat 5 --out target/bench
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
from streaming import VIPS  # noqa: E402

Image.MAX_IMAGE_PIXELS = None


def measure(command):
    """Wall seconds, peak RSS in MiB (GNU time), and the decode seconds gpuconv reports."""
    report = Path("/tmp/codecs-time.txt")
    start = time.perf_counter()
    process = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(report), *command],
                             capture_output=True, text=True)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        sys.exit(f"{command} failed: {process.stderr}")
    decode = re.search(r"decode ([\d.]+) ms", process.stderr)
    return wall, int(report.read_text().split()[-1]) / 1024, float(decode.group(1)) / 1e3 if decode else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default="target/release/gpuconv")
    parser.add_argument("--base", required=True, help="the baseline gpuconv build")
    parser.add_argument("--sizes", default="16384x16384")
    parser.add_argument("--inputs", default="png,pgm")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default="target/bench", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes.split(","):
        width, height = map(int, size.split("x"))
        image = synthetic(height, width)
        for kind in args.inputs.split(","):
            source = args.out / f"codecs-{size}.{kind}"
            if kind == "png":
                Image.fromarray(image).save(source, compress_level=1)
            else:
                with open(source, "wb") as f:
                    f.write(f"P5\n{width} {height}\n255\n".encode())
                    f.write(image.tobytes())
            filter_ = lambda binary, *more: [binary, "filter", str(source), "--edge", "--backend", "cpu", "--timings", *more, "-o"]  # noqa: E731
            tools = {"baseline": filter_(args.base)}
            for compression in ["default", "fast", "small"]:
                tools[f"gpuconv --compression {compression}"] = filter_(args.bin, "--compression", compression)
            if kind == "png":
                # pyvips-binary's libvips has no PGM loader.
                tools["libvips (pyvips)"] = [sys.executable, "-c", VIPS, str(source)]
            runs = {name: [] for name in tools}
            sizes = {}
            for _ in range(args.repeat):
                # Taking turns: the machine's drift hits every tool alike.
                for name, command in tools.items():
                    target = args.out / f"codecs-{size}-{kind}-edge.png"
                    runs[name].append(measure(command + [str(target)]))
                    if name not in sizes:
                        if not matches_reference(target, image):
                            sys.exit(f"{name} on {size} {kind}: output differs from the reference")
                        sizes[name] = target.stat().st_size
                    target.unlink()
            for name, measured in runs.items():
                walls = [w for w, _, _ in measured]
                decodes = [d for _, _, d in measured if d is not None]
                row = {
                    "size": size,
                    "input": kind,
                    "tool": name,
                    "wall_s": statistics.median(walls),
                    "wall_range_s": [min(walls), max(walls)],
                    "peak_rss_mib": statistics.median(m for _, m, _ in measured),
                    "decode_s": statistics.median(decodes) if decodes else None,
                    "output_bytes": sizes[name],
                }
                results.append(row)
                print(json.dumps(row), flush=True)
            source.unlink()
    (args.out / "codecs.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
