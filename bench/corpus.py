#!/usr/bin/env python3
"""Every file of a folder of other projects' test images read by gpuconv and by Pillow: which
gpuconv reads to Pillow's own gray image, which differ, which it refuses (and with what line),
which crash or take too long. The images are read, never copied into this repository:

    git -C /work/.mirror/python-pillow+Pillow/repo archive HEAD Tests/images | tar -x -C /tmp/pillow
    python bench/corpus.py --bin target/release/gpuconv /tmp/pillow/Tests/images

gpuconv writes each image's gray pixels through the identity kernel (border replicate, so the
output is the image itself), as PGM. Pillow's gray is `convert('L')` for 8-bit modes, with
gpuconv's documented rules where Pillow's own conversion differs on purpose: 16-bit samples
rounded (`round(v / 257)`, where Pillow clips at 255) and float samples clamped to 0..1.
"""

import argparse
import collections
import concurrent.futures
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Pillow keeps its decompression-bomb limit: some test files claim gigapixels.

READABLE = {"png", "jpg", "jpeg", "pgm", "pnm", "ppm", "pbm", "pam", "bmp", "tif", "tiff",
            "gif", "webp", "tga", "qoi"}
LOSSY = {"jpg", "jpeg", "webp"}
IDENTITY = "0,0,0;0,1,0;0,0,0"


def pillow_gray(path, orient=False):
    """Pillow's gray image of `path` by gpuconv's rules (turned upright by its orientation with
    `orient`), or the reason Pillow cannot read it."""
    try:
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened) if orient else opened
            mode = image.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                values = np.asarray(image, dtype=np.int64)
                if mode == "I" and values.max(initial=0) > 65535:
                    return None, f"32-bit gray ({mode})"
                return np.clip((values + 128) // 257, 0, 255).astype(np.uint8), mode
            if mode == "F":
                values = np.asarray(image, dtype=np.float64)
                return np.round(np.clip(np.nan_to_num(values), 0, 1) * 255).astype(np.uint8), mode
            return np.asarray(image.convert("L")), mode
    except Exception as error:  # Pillow's reasons are many; any is "Pillow refuses".
        return None, f"{type(error).__name__}: {error}".splitlines()[0][:120]


def read_pgm(path):
    data = path.read_bytes()
    fields, position = [], 0
    while len(fields) < 4:
        while data[position:position + 1].isspace():
            position += 1
        if data[position:position + 1] == b"#":
            position = data.index(b"\n", position)
            continue
        end = position
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[position:end])
        position = end
    width, height = int(fields[1]), int(fields[2])
    return np.frombuffer(data[position + 1:position + 1 + width * height], np.uint8).reshape(height, width)


def gpuconv_gray(binary, path, out, timeout, orient):
    """gpuconv's gray image, or its one-line refusal; exit code and seconds."""
    command = [binary, "filter", "--backend", "cpu", "-q", "-k", IDENTITY, "--border", "replicate",
               *(["--orient"] if orient else []), "-o", str(out), str(path)]
    start = time.perf_counter()
    try:
        process = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timeout", None, time.perf_counter() - start
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        return None, process.stderr.strip(), process.returncode, seconds
    return read_pgm(out), process.stderr.strip(), 0, seconds


def judge(binary, path, timeout, orient):
    extension = path.suffix.lower().lstrip(".")
    expected, mode = pillow_gray(path, orient)
    with tempfile.TemporaryDirectory() as scratch:
        got, message, code, seconds = gpuconv_gray(binary, path, Path(scratch) / "out.pgm", timeout,
                                                   orient)
    if code is None:
        verdict = "timeout"
    elif code not in (0, 1, 2):
        verdict = "crash"
    elif got is None:
        verdict = "refused" if expected is not None else "both refuse"
    elif expected is None:
        verdict = "only gpuconv reads"
    elif got.shape != expected.shape:
        verdict = "differs"
        message = f"{got.shape[1]}x{got.shape[0]}, Pillow {expected.shape[1]}x{expected.shape[0]}"
    elif np.array_equal(got, expected):
        verdict = "exact"
    else:
        diff = np.abs(got.astype(int) - expected.astype(int))
        close = extension in LOSSY
        verdict = "lossy, close" if close else "differs"
        message = f"max |diff| {diff.max()}, {np.count_nonzero(diff)} of {diff.size} pixels"
    return path, extension, mode, verdict, message, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--bin", default="target/release/gpuconv")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--orient", action="store_true",
                        help="gpuconv --orient against Pillow's ImageOps.exif_transpose")
    args = parser.parse_args()
    files = sorted(p for p in args.folder.rglob("*")
                   if p.is_file() and p.suffix.lower().lstrip(".") in READABLE)
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda p: judge(args.bin, p, args.timeout, args.orient), files))
    counts = collections.Counter(verdict for *_, verdict, _, _ in results)
    by_format = collections.defaultdict(collections.Counter)
    for _, extension, _, verdict, _, _ in results:
        by_format[extension][verdict] += 1
    verdicts = ["exact", "lossy, close", "differs", "refused", "both refuse", "only gpuconv reads",
                "crash", "timeout"]
    print(f"{len(files)} files of the formats gpuconv reads in {args.folder}")
    print(" | ".join(f"{v}: {counts[v]}" for v in verdicts))
    slowest = max(results, key=lambda r: r[5])
    print(f"slowest: {slowest[0].relative_to(args.folder)} {slowest[5]:.2f} s")
    print()
    print("| format | " + " | ".join(verdicts) + " |")
    print("|---" * (len(verdicts) + 1) + "|")
    for extension in sorted(by_format):
        print(f"| {extension} | " + " | ".join(str(by_format[extension][v]) for v in verdicts) + " |")
    for shown in ["refused", "crash", "timeout", "differs", "only gpuconv reads", "both refuse"]:
        rows = [r for r in results if r[3] == shown]
        if rows:
            print(f"\n## {shown} ({len(rows)})")
            for path, _, mode, _, message, _ in rows:
                line = message.splitlines()[-1] if message else ""
                print(f"- {path.relative_to(args.folder)} [{mode}]: {line[:200]}")
    if counts["crash"] or counts["timeout"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
