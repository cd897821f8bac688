#!/usr/bin/env python3
"""The formats without compression, whole process: a large synthetic image as PGM, TIFF
(uncompressed strips) and QOI to its edge image in PGM or TIFF, with a baseline build and this
one taking turns, beside `cp` of the input (what the disk and page cache allow). Wall time and
peak RSS (medians of --repeat); every output checked against the numpy reference.

    python bench/fast_formats.py --base /tmp/gpuconv-1e1b6cc --bin target/release/gpuconv \
        --size 16384x16384 --repeat 5 --out target/bench
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from cli_large import matches_reference, synthetic  # noqa: E402

Image.MAX_IMAGE_PIXELS = None


def measure(command):
    """Wall seconds and peak RSS in MiB (GNU time)."""
    report = Path("/tmp/fast-formats-time.txt")
    start = time.perf_counter()
    process = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(report), *command],
                             capture_output=True, text=True)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        sys.exit(f"{command} failed: {process.stderr}")
    return wall, int(report.read_text().split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default="target/release/gpuconv")
    parser.add_argument("--base", required=True, help="the baseline gpuconv build")
    parser.add_argument("--size", default="16384x16384")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default="target/bench", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    width, height = map(int, args.size.split("x"))
    image = synthetic(height, width)
    inputs = {}
    for kind in ["pgm", "tif", "qoi"]:
        path = args.out / f"fast-{args.size}.{kind}"
        # QOI holds RGB or RGBA: the gray image as RGB, which gpuconv makes gray again exactly.
        picture = Image.fromarray(image)
        (picture.convert("RGB") if kind == "qoi" else picture).save(path)
        inputs[kind] = path
    cases = [("pgm", "pgm"), ("tif", "tif"), ("qoi", "pgm")]
    runs = {}
    for _ in range(args.repeat):
        for kind, out_kind in cases:
            source = inputs[kind]
            copy = args.out / f"copy.{kind}"
            runs.setdefault((kind, "cp"), []).append(measure(["cp", str(source), str(copy)]))
            copy.unlink()
            for label, binary in [("baseline", args.base), ("gpuconv", args.bin)]:
                output = args.out / f"fast-edge-{label}.{out_kind}"
                command = [binary, "filter", str(source), "--edge", "-o", str(output), "--backend",
                           "cpu", "-q"]
                runs.setdefault((kind, label), []).append(measure(command))
                if len(runs[(kind, label)]) == 1 and not matches_reference(output, image):
                    sys.exit(f"{label} {kind}: output differs from the reference")
                output.unlink()
    print(f"# {args.size}, medians of {args.repeat} (ranges), taking turns")
    print("| input → edge | tool | wall s | peak RSS MiB |")
    print("| --- | --- | ---: | ---: |")
    for (kind, label), values in runs.items():
        walls = sorted(v[0] for v in values)
        rss = statistics.median(v[1] for v in values)
        out_kind = dict(cases)[kind]
        print(f"| {kind.upper()} → {out_kind.upper()} | {label} | {statistics.median(walls):.2f} "
              f"({walls[0]:.2f}-{walls[-1]:.2f}) | {rss:.0f} |")


if __name__ == "__main__":
    main()
