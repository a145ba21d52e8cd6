"""A streaming safetensors writer for numpy arrays (bfloat16 included, via
ml_dtypes; `safetensors.numpy` cannot write bf16). Tensors are produced one at a
time, so exporting a 7B never holds more than one tensor in memory.

Layout (the safetensors format): 8-byte little-endian header length N, N bytes
of JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
{str: str}} padded with spaces so the data starts 8-byte aligned, then the raw
little-endian tensor bytes back to back, in the header's (name-sorted) order."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Callable

import ml_dtypes
import numpy as np

DTYPE_CODES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(ml_dtypes.bfloat16): "BF16",
               np.dtype(np.float64): "F64", np.dtype(np.int64): "I64", np.dtype(np.int32): "I32",
               np.dtype(np.int16): "I16", np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8",
               np.dtype(np.bool_): "BOOL"}


def write_safetensors(path: str | Path, entries: list[tuple[str, tuple, np.dtype, Callable[[], np.ndarray]]],
                      metadata: dict | None = None) -> int:
    """Write `entries` (name, shape, dtype, make_array) in name order; returns the data size in bytes.

    The header is built from the declared shapes and dtypes before any tensor is
    made; `make_array()` is called once per tensor, just before its bytes are
    written, and its result is cast to the declared dtype."""
    entries = sorted(entries, key=lambda e: e[0])
    names = [e[0] for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate tensor names")
    header, offset = {}, 0
    for name, shape, dtype, _ in entries:
        dtype = np.dtype(dtype)
        if dtype not in DTYPE_CODES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dtype}, which safetensors cannot hold here "
                             f"(supported: {', '.join(str(d) for d in DTYPE_CODES)})")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[name] = {"dtype": DTYPE_CODES[dtype], "shape": [int(n) for n in shape],
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape, dtype, make in entries:
            array = np.asarray(make(), dtype=np.dtype(dtype))  # not ascontiguousarray: it makes 0-d arrays 1-d
            if not array.flags.c_contiguous:
                array = array.copy(order="C")
            if tuple(array.shape) != tuple(shape):
                raise ValueError(f"{path}: tensor {name!r} has shape {array.shape}, declared {tuple(shape)}")
            if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
                array = array.byteswap()
            f.write(array.reshape(-1).view(np.uint8).data)  # no second copy of the tensor
    return offset


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray], metadata: dict | None = None) -> int:
    """Write a {name: array} dict (all in memory already); returns the data size in bytes."""
    return write_safetensors(path, [(k, v.shape, v.dtype, lambda v=v: v) for k, v in arrays.items()], metadata)
