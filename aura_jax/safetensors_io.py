"""A streaming safetensors writer for numpy arrays (bfloat16 included, via
ml_dtypes; `safetensors.numpy` cannot write bf16). Tensors are produced one at a
time, so exporting a 7B never holds more than one tensor in memory."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Callable

import ml_dtypes
import numpy as np

DTYPE_CODES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(ml_dtypes.bfloat16): "BF16",
               np.dtype(np.float64): "F64", np.dtype(np.int64): "I64", np.dtype(np.int32): "I32",
               np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}


def write_safetensors(path: str | Path, entries: list[tuple[str, tuple, np.dtype, Callable[[], np.ndarray]]],
                      metadata: dict | None = None) -> int:
    """Write `entries` (name, shape, dtype, make_array) in name order; returns the data size in bytes."""
    entries = sorted(entries, key=lambda e: e[0])
    header, offset = {}, 0
    for name, shape, dtype, _ in entries:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[name] = {"dtype": DTYPE_CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape, dtype, make in entries:
            array = np.ascontiguousarray(make(), dtype=np.dtype(dtype))
            if tuple(array.shape) != tuple(shape):
                raise ValueError(f"{path}: tensor {name} has shape {array.shape}, declared {tuple(shape)}")
            f.write(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    return offset


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray], metadata: dict | None = None) -> int:
    return write_safetensors(path, [(k, v.shape, v.dtype, lambda v=v: v) for k, v in arrays.items()], metadata)
