"""What every test shares: the engines of both backends, a numpy reference, random images."""

from __future__ import annotations

import os

import numpy as np
import pytest

import gpuconv

_gpu = None


def gpu_engine() -> gpuconv.Engine:
    """The GPU engine (lavapipe on machines without a GPU). Under CI=true a missing adapter
    fails the test; elsewhere it is skipped, saying why."""
    global _gpu
    if _gpu is None:
        try:
            _gpu = gpuconv.Engine("gpu")
        except gpuconv.EngineError as error:
            if os.environ.get("CI") == "true":
                pytest.fail(f"no GPU adapter under CI=true: {error}")
            pytest.skip(f"no GPU adapter: {error}")
    return _gpu


@pytest.fixture(params=["cpu", "gpu"])
def engine(request: pytest.FixtureRequest) -> gpuconv.Engine:
    """Each test taking `engine` runs on both backends."""
    return gpuconv.Engine("cpu") if request.param == "cpu" else gpu_engine()


def random_image(height: int, width: int, seed: int) -> np.ndarray:
    """Random pixels over the whole 0-255 range, never uniform."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width), dtype=np.uint8)
    assert image.min() != image.max() or image.size == 1
    return image


PAD_MODES = {"zero": "constant", "replicate": "edge", "reflect": "reflect"}


def sums(image: np.ndarray, weights: np.ndarray, border: str = "valid") -> np.ndarray:
    """The signed sums of each 3x3 window with `weights`: exact int64 for whole-number weights,
    float32 in row-major tap order (as gpuconv sums fractional kernels) otherwise."""
    if border != "valid":
        image = np.pad(image, 1, mode=PAD_MODES[border])
    height, width = image.shape[0] - 2, image.shape[1] - 2
    whole = bool(np.all(weights == np.round(weights)))
    dtype = np.int64 if whole else np.float32
    total = np.zeros((height, width), dtype=dtype)
    for y in range(3):
        for x in range(3):
            tap = image[y : y + height, x : x + width].astype(dtype)
            total = total + dtype(weights[y, x]) * tap
    return total


def reference(image: np.ndarray, weights: np.ndarray, border: str = "valid") -> np.ndarray:
    """gpuconv's pixel: clamp(|sum|, 0, 255), fractional sums rounded to nearest, ties to even."""
    total = np.abs(sums(image, np.asarray(weights, dtype=np.float32), border))
    if total.dtype == np.float32:
        total = np.rint(total)
    return np.clip(total, 0, 255).astype(np.uint8)


def reference_edge(image: np.ndarray, border: str = "valid") -> np.ndarray:
    v = reference(image, gpuconv.kernel("vertical"), border).astype(np.int32)
    h = reference(image, gpuconv.kernel("horizontal"), border).astype(np.int32)
    return np.minimum(v + h, 255).astype(np.uint8)
