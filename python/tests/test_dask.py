"""Past one machine: gpuconv.filter as Dask's block function, on a local cluster of worker
processes, bit-identical to filtering the whole image at once with the matching border."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from conftest import random_image
from dask.distributed import Client, LocalCluster

import gpuconv


@pytest.fixture(scope="module")
def client():
    # Several worker processes, as a cluster would have: each imports gpuconv and opens its own
    # engine; blocks travel between processes pickled.
    cluster = LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client:
        yield client


def edges(block: np.ndarray) -> np.ndarray:
    # Dask has padded the block by one pixel on each side: 'valid' gives the block's own size.
    return gpuconv.filter(block, edge=True, backend="cpu", threads=1)


# Dask's boundary beside the gpuconv border that gives the same image: Dask's 'nearest' repeats
# the edge pixel, as gpuconv's 'replicate'; so does Dask's 'reflect' at depth 1 (it mirrors with
# the edge pixel repeated, numpy's 'symmetric'); a constant 0 is 'zero'; 'none' pads nothing at
# the image's edges, so the outer blocks shrink, and the whole is gpuconv's 'valid'. gpuconv's
# 'reflect' (OpenCV's REFLECT_101, the edge pixel not repeated) has no Dask twin.
BOUNDARIES = [("nearest", "replicate"), ("reflect", "replicate"), (0, "zero"), ("none", "valid")]


@pytest.mark.parametrize("boundary,border", BOUNDARIES)
def test_map_overlap_equals_the_whole_image(client, boundary, border) -> None:
    image = random_image(517, 389, seed=29)
    blocks = da.from_array(image, chunks=(101, 77))  # 6 x 6 blocks, the last ones smaller
    filtered = da.map_overlap(
        edges, blocks, depth=1, boundary=boundary, trim=False, dtype=np.uint8, meta=np.empty((0, 0), np.uint8)
    )
    actual = filtered.compute()
    expected = gpuconv.filter(image, edge=True, border=border, backend="cpu")
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)
    # The work ran on the cluster's worker processes.
    assert len(client.scheduler_info()["workers"]) == 3


def test_other_kernels_and_responses_too(client) -> None:
    image = random_image(300, 301, seed=31)
    blocks = da.from_array(image, chunks=(64, 100))

    def laplacian_sums(block: np.ndarray) -> np.ndarray:
        return gpuconv.responses(block, "laplacian-8", backend="cpu", threads=1)

    sums = da.map_overlap(
        laplacian_sums, blocks, depth=1, boundary="nearest", trim=False, dtype=np.int32, meta=np.empty((0, 0), np.int32)
    ).compute()
    np.testing.assert_array_equal(sums, gpuconv.responses(np.pad(image, 1, mode="edge"), "laplacian-8", backend="cpu"))
