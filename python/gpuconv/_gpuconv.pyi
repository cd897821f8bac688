"""Types of the native module; gpuconv/__init__.py is its one caller and the public API."""

from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np
import numpy.typing as npt

KERNELS: list[str]
BORDERS: list[str]

class Engine:
    def __init__(self, backend: str) -> None: ...
    @property
    def description(self) -> str: ...
    @property
    def fallback_reason(self) -> str | None: ...
    @property
    def has_gpu(self) -> bool: ...
    def run(
        self,
        image: npt.NDArray[np.uint8],
        kernels: Sequence[str | Sequence[float]],
        combine: str,
        threshold: int | None,
        border: str,
        threads: int | None,
        outputs: Sequence[npt.NDArray[np.uint8]] | None,
    ) -> list[npt.NDArray[np.uint8]]: ...
    def sums(
        self,
        image: npt.NDArray[np.uint8],
        kernels: Sequence[str | Sequence[float]],
        border: str,
        threads: int | None,
    ) -> list[npt.NDArray[Any]]: ...

def gray(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]: ...
def load(path: str | PathLike[str]) -> npt.NDArray[np.uint8]: ...
def kernel_weights(words: str) -> tuple[float, float, float, float, float, float, float, float, float]: ...
