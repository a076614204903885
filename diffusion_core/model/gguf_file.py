"""A small, strict reader for GGUF files (llama.cpp's weight format).

Reads the header, the metadata and the tensor table with ``struct``, and the
tensor data through a read-only memory map; dequantises F32, F16, BF16, Q8_0,
Q4_0 and Q4_1 to float32 with numpy.  Nothing is unpickled and nothing runs.
Every inconsistency (bad magic, a table that points past the end of the
file, an unknown type) raises :class:`GGUFError` naming the file and what was
expected, so a truncated or altered download fails with one clear message.

Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# metadata value types -> struct format (8 = string, 9 = array are read by hand)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

# ggml tensor types: name, elements per block, bytes per block
GGML_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
              8: ("Q8_0", 32, 34), 30: ("BF16", 1, 2)}


class GGUFError(ValueError):
    """The file is not a GGUF this reader can read; the message names the file and the problem."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy order (outermost first): GGUF stores ne[0] (innermost) first
    ggml_type: int
    offset: int             # absolute byte offset in the file
    nbytes: int


class GGUFFile:
    """``metadata`` (dict) and ``tensors`` (name -> TensorInfo); ``array(name)`` dequantises one tensor."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise GGUFError(f"{self.path}: cannot read ({e})") from e
        self._pos = 0
        if self._take(4) != MAGIC:
            raise GGUFError(f"{self.path}: not a GGUF file (expected the magic bytes 'GGUF' at offset 0)")
        version = self._unpack("<I")
        if version not in (2, 3):
            raise GGUFError(f"{self.path}: GGUF version {version}; this reader knows versions 2 and 3")
        n_tensors, n_kv = self._unpack("<Q"), self._unpack("<Q")
        self.metadata = {}
        for _ in range(n_kv):
            key = self._string()
            self.metadata[key] = self._value(self._unpack("<I"))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            dims = [self._unpack("<Q") for _ in range(self._unpack("<I"))]
            infos.append((name, dims, self._unpack("<I"), self._unpack("<Q")))
        align = int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        data_start = -(-self._pos // align) * align
        self.tensors: dict[str, TensorInfo] = {}
        for name, dims, ggml_type, rel in infos:
            if ggml_type not in GGML_TYPES:
                raise GGUFError(f"{self.path}: tensor {name!r} has ggml type {ggml_type}, which this reader "
                                f"cannot dequantise (known: {', '.join(t[0] for t in GGML_TYPES.values())})")
            _, block, block_bytes = GGML_TYPES[ggml_type]
            count = int(np.prod(dims)) if dims else 1
            if count % block:
                raise GGUFError(f"{self.path}: tensor {name!r} has {count} elements, not a multiple of {block}")
            info = TensorInfo(name, tuple(reversed(dims)), ggml_type, data_start + rel, count // block * block_bytes)
            if info.offset + info.nbytes > len(self._map):
                raise GGUFError(f"{self.path}: truncated: tensor {name!r} needs bytes up to "
                                f"{info.offset + info.nbytes:,} but the file has {len(self._map):,}")
            self.tensors[name] = info

    # -- header parsing -------------------------------------------------------------------------------
    def _take(self, n: int) -> bytes:
        if self._pos + n > len(self._map):
            raise GGUFError(f"{self.path}: truncated header (needed {n} bytes at offset {self._pos:,}, "
                            f"file has {len(self._map):,})")
        out = self._map[self._pos:self._pos + n].tobytes()
        self._pos += n
        return out

    def _unpack(self, fmt: str):
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def _string(self) -> str:
        n = self._unpack("<Q")
        if n > len(self._map):
            raise GGUFError(f"{self.path}: corrupt header (a string of {n:,} bytes at offset {self._pos:,})")
        return self._take(n).decode("utf-8", errors="replace")

    def _value(self, vtype: int):
        if vtype in _SCALARS:
            return self._unpack(_SCALARS[vtype])
        if vtype == 8:
            return self._string()
        if vtype == 9:
            item_type, n = self._unpack("<I"), self._unpack("<Q")
            if item_type in _SCALARS and item_type != 7:  # numeric arrays in one read
                dtype = np.dtype(_SCALARS[item_type])
                return np.frombuffer(self._take(n * dtype.itemsize), dtype=dtype).tolist()
            return [self._value(item_type) for _ in range(n)]
        raise GGUFError(f"{self.path}: unknown metadata value type {vtype} at offset {self._pos:,}")

    # -- tensor data ----------------------------------------------------------------------------------
    def array(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a float32 array of its numpy shape."""
        info = self.tensors[name]
        raw = self._map[info.offset:info.offset + info.nbytes]
        kind = GGML_TYPES[info.ggml_type][0]
        if kind == "F32":
            flat = raw.view(np.float32)
        elif kind == "F16":
            flat = raw.view(np.float16).astype(np.float32)
        elif kind == "BF16":
            flat = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            flat = _dequantise_blocks(kind, raw)
        return np.array(flat, dtype=np.float32).reshape(info.shape)


def _dequantise_blocks(kind: str, raw: np.ndarray) -> np.ndarray:
    """Q8_0: d·q; Q4_0: d·(q−8); Q4_1: d·q + m — 32 elements a block, low nibbles first."""
    block_bytes = GGML_TYPES[{"Q4_0": 2, "Q4_1": 3, "Q8_0": 8}[kind]][2]
    blocks = raw.reshape(-1, block_bytes)                                   # (n_blocks, bytes)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)           # (n_blocks, 1)
    if kind == "Q8_0":
        return (blocks[:, 2:].copy().view(np.int8).astype(np.float32) * d).reshape(-1)
    start = 4 if kind == "Q4_1" else 2
    qs = blocks[:, start:]                                                   # (n_blocks, 16)
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)      # (n_blocks, 32)
    if kind == "Q4_0":
        return ((q - 8.0) * d).reshape(-1)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    return (q * d + m).reshape(-1)
