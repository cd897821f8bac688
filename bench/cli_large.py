#!/usr/bin/env python3
"""The whole gpuconv CLI on one large PNG (or PGM), per backend: wall time (the median of
--repeat runs), the stages it reports with --timings, the share of the wall time spent outside
decoding and encoding, and peak resident memory against input + output. Checks that every
backend wrote the same pixels and that they equal a numpy reference. Needs numpy and Pillow
(scripts/bench-peers.sh's venv has them).

    python bench/cli_large.py --bin target/release/gpuconv --size 32768x32768 --out target/bench
    python bench/cli_large.py --format pgm --repeat 3   # PGM to PGM: no codec sets the pace
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

Image.MAX_IMAGE_PIXELS = None
BAND = 2048


def synthetic(height: int, width: int) -> np.ndarray:
    """Shading, hard-edged blocks and noise, made band by band so that only the image itself
    is ever held in full."""
    image = np.empty((height, width), np.uint8)
    x = np.arange(width, dtype=np.int64)[None, :]
    for top in range(0, height, BAND):
        y = np.arange(top, min(top + BAND, height), dtype=np.int64)[:, None]
        shade = 60 + 100 * x // width + 60 * y // height
        block = np.where((x // 97 + y // 61) % 3 == 0, 50, 0)
        noise = ((x * 2654435761) ^ (y * 40503)) >> 7 & 15
        image[top : top + len(y)] = np.clip(shade + block + noise - 8, 0, 255)
    return image


def reference_edge(image: np.ndarray, top: int, bottom: int) -> np.ndarray:
    """Output rows top..bottom of the lesson's edge image: min(|V| + |H| clamped, 255)."""
    x = image[top : bottom + 2].astype(np.int32)
    w = x.shape[1]
    win = lambda a, b: x[a : a + bottom - top, b : b + w - 2]  # noqa: E731
    vertical = win(0, 0) - win(0, 2) + 2 * (win(1, 0) - win(1, 2)) + win(2, 0) - win(2, 2)
    horizontal = win(0, 0) + 2 * win(0, 1) + win(0, 2) - win(2, 0) - 2 * win(2, 1) - win(2, 2)
    clip = lambda r: np.minimum(np.abs(r), 255)  # noqa: E731
    return np.minimum(clip(vertical) + clip(horizontal), 255).astype(np.uint8)


def matches_reference(target: Path, image: np.ndarray) -> bool:
    """Whether the PNG at `target` is the edge image of `image`, compared band by band."""
    written = np.asarray(Image.open(target))
    height, width = image.shape
    return written.shape == (height - 2, width - 2) and all(
        np.array_equal(written[top : top + BAND], reference_edge(image, top, min(top + BAND, height - 2)))
        for top in range(0, height - 2, BAND)
    )


def run(binary: str, source: Path, target: Path, backend: str) -> dict:
    command = [binary, "filter", str(source), "--edge", "-o", str(target), "--backend", backend, "--timings"]
    start = time.perf_counter()
    process = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    stderr = process.stderr
    if process.returncode != 0:
        sys.exit(f"gpuconv --backend {backend} failed: {stderr}")
    # gpuconv's own high-water mark: a child's rusage would count pages shared with this process.
    peak = re.search(r"peak resident memory: ([0-9.]+) MiB", stderr)
    line = next(l for l in stderr.splitlines() if str(source) in l and " ms" in l)
    stages = {name.strip(): float(ms) / 1e3 for name, ms in re.findall(r"([a-z ]+) ([0-9.]+) ms", line)}
    device = re.search(r"\[(.*)\]$", line)
    outside = wall - stages.get("decode", 0) - stages.get("encode", 0)
    return {
        "backend": backend,
        "device": device.group(1) if device else backend,
        "wall_s": wall,
        "stages_s": stages,
        "outside_decode_encode_share": outside / wall,
        "peak_rss_mib": float(peak.group(1)) if peak else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default="target/release/gpuconv")
    parser.add_argument("--size", default="32768x32768", help="WIDTHxHEIGHT")
    parser.add_argument("--backends", default="cpu,gpu")
    parser.add_argument("--out", default="target/bench", type=Path)
    parser.add_argument("--format", default="png", choices=["png", "pgm"])
    parser.add_argument("--repeat", default=1, type=int, help="runs per backend; the median is reported")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / f"large-{width}x{height}.{args.format}"
    if args.format == "png":
        Image.fromarray(synthetic(height, width)).save(source, compress_level=1)
    else:
        with open(source, "wb") as f:
            f.write(f"P5\n{width} {height}\n255\n".encode())
            f.write(synthetic(height, width).tobytes())
    runs = []
    outputs = []
    for backend in args.backends.split(","):
        target = args.out / f"large-{width}x{height}-edge-{backend}.{args.format}"
        tries = sorted((run(args.bin, source, target, backend) for _ in range(args.repeat)), key=lambda r: r["wall_s"])
        median = dict(tries[len(tries) // 2])
        median["wall_s_all"] = [r["wall_s"] for r in tries]
        runs.append(median)
        outputs.append(target)
        print(json.dumps(runs[-1]), flush=True)
    same_bytes = all(o.read_bytes() == outputs[0].read_bytes() for o in outputs[1:])
    matches = matches_reference(outputs[0], np.asarray(Image.open(source)))
    for o in outputs:
        o.unlink()
    result = {
        "width": width,
        "height": height,
        "format": args.format,
        "input_file_mib": source.stat().st_size / 2**20,
        "image_mib": width * height / 2**20,
        "output_mib": (width - 2) * (height - 2) / 2**20,
        "backends_agree": same_bytes,
        "matches_reference": bool(matches),
        "runs": runs,
    }
    source.unlink()
    (args.out / "cli-large.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"backends agree byte for byte: {same_bytes}; equal to the numpy reference: {matches}")
    if not (same_bytes and matches):
        sys.exit("outputs differ")


if __name__ == "__main__":
    main()
