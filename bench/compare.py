#!/usr/bin/env python3
"""Writes BENCHMARKS.md from one run of scripts/bench-peers.sh: gpuconv's in-process timings
(`gpuconv bench --input`, same image, 1 and 2 threads) beside the peers' (shared/bench/peers.py,
which also times gpuconv as a whole process and checks its output bit for bit).

    python3 bench/compare.py target/bench > BENCHMARKS.md
"""

import json
import sys
from pathlib import Path

OPS = {"v": "vertical", "edge": "edge"}


def main(folder: Path) -> None:
    peers_runs = sorted(folder.glob("peers-*.json"), key=lambda p: int(p.stem.split("-")[1].split("x")[0]))
    if not peers_runs:
        sys.exit(f"no peers-*.json in {folder}")
    first = json.loads(peers_runs[0].read_text())
    machine = first["machine"]
    print("# Benchmarks\n")
    print("Made by `bash scripts/bench-peers.sh` in one run, on the same synthetic image for every tool")
    print("(`shared/bench/peers.py`'s). The harness checked every peer's output, and the gpuconv CLI's in")
    print("the whole-process rows, bit for bit against its reference; gpuconv's in-process rows time the")
    print("same code through `gpuconv bench --input`. Medians; the last column is peer time / gpuconv time")
    print("at the same thread count (above 1: gpuconv is faster). This is a shared 2-core VM: repeat runs")
    print("move single numbers by 10-30%, ratios much less.\n")
    print(f"Machine: {machine.get('cpu', 'x86-64')}, {machine['cpus']} CPUs, {machine['platform']}, "
          f"Python {machine['python']}, numpy {machine.get('numpy', '?')}, OpenCV {machine.get('cv2', '?')}. "
          "No GPU: the GPU rows of `gpuconv bench` on this machine run on lavapipe (Mesa's software "
          "Vulkan) and say nothing about GPU speed, so they are left out.\n")
    for run in peers_runs:
        data = json.loads(run.read_text())
        size = f"{data['image']['width']}x{data['image']['height']}"
        ours = {}
        for threads in (1, 2):
            path = folder / f"gpuconv-{size}-{threads}.json"
            if path.exists():
                for row in json.loads(path.read_text()):
                    ours[(row["op"], threads)] = row
        print(f"## {size}\n")
        print("### In process (image already in memory; output allocated)\n")
        print("| op | implementation | threads | median ms | Mpx/s | gpuconv faster by |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for op, our_op in OPS.items():
            for threads in (1, 2):
                row = ours.get((our_op, threads))
                if row and row.get("compute_ms"):
                    print(f"| {op} | gpuconv CPU | {threads} | {row['compute_ms']:.2f} | {row['mpx_per_s']:.0f} | |")
            for r in data["results"]:
                if r["section"] != "in-process" or r["op"] != op or r.get("median_ms") is None:
                    continue
                mine = ours.get((our_op, r["threads"]))
                ratio = f"{r['median_ms'] / mine['compute_ms']:.2f}x" if mine and mine.get("compute_ms") else ""
                print(f"| {op} | {r['peer']} | {r['threads']} | {r['median_ms']:.2f} | {r['mpix_per_s']:.0f} | {ratio} |")
        print("\n### Whole process (start-up, read PGM, filter, write PGM)\n")
        print("| op | implementation | median ms | check |")
        print("| --- | --- | ---: | --- |")
        for r in data["results"]:
            if r["section"] != "process" or r.get("median_ms") is None:
                continue
            name = "gpuconv CLI, CPU" if "gpuconv" in r["peer"] else r["peer"]
            print(f"| {r['op']} | {name} | {r['median_ms']:.2f} | {r['check']} |")
        print()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench"))
