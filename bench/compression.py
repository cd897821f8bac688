#!/usr/bin/env python3
"""The PNG compression trade, measured: for each image given (PGM, so that decoding costs
nothing), the image itself (through the identity kernel) and its edge image, written as PNG by
a baseline build and by this one with each `--compression`: output bytes and whole-process wall
time (median of --repeat), on the CPU backend.

    python bench/compression.py --base /tmp/base/gpuconv --bin target/release/gpuconv \
        photo.pgm other.pgm --repeat 3 --out target/bench
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

IDENTITY = "0,0,0;0,1,0;0,0,0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--bin", default="target/release/gpuconv")
    parser.add_argument("--base", required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="target/bench", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for image in args.images:
        for content, operation in [("image", ["-k", IDENTITY]), ("edge", ["--edge"])]:
            tools = {"baseline": [args.base]}
            for compression in ["fast", "default", "small"]:
                tools[compression] = [args.bin, "--compression", compression]
            walls = {name: [] for name in tools}
            sizes = {}
            target = args.out / "compression.png"
            for _ in range(args.repeat):
                for name, (binary, *more) in tools.items():
                    command = [binary, "filter", str(image), *operation, "--backend", "cpu", *more, "-o", str(target)]
                    start = time.perf_counter()
                    subprocess.run(command, check=True, capture_output=True)
                    walls[name].append(time.perf_counter() - start)
                    sizes[name] = target.stat().st_size
            for name in tools:
                row = {
                    "image": image.name,
                    "content": content,
                    "tool": name,
                    "wall_s": statistics.median(walls[name]),
                    "bytes": sizes[name],
                    "bytes_vs_baseline": sizes[name] / sizes["baseline"],
                }
                results.append(row)
                print(json.dumps(row), flush=True)
    target.unlink(missing_ok=True)
    (args.out / "compression.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
