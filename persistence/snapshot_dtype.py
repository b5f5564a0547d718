"""Dtypes as text: the JSON of numpy's ``descr``, never pickle or eval.

The descr is what numpy's ``.npy`` format stores (``numpy.lib.format.dtype_to_descr``),
written as JSON and rebuilt with ``numpy.lib.format.descr_to_dtype`` after the JSON
lists are turned back into numpy's tuples (field, title, sub-array shape). Plain and
structured dtypes come back exactly: sub-arrays, nested records, padding and
alignment, titles, byte order. Object dtypes, itemsize 0 and dtypes that would not
come back the same (metadata, a base type under fields, new-style dtypes) are
refused both ways.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from numpy.lib.format import descr_to_dtype

#: Longest descr JSON a snapshot stores.
MAX_DESCR_BYTES = 64 << 10
_MAX_DESCR_DEPTH = 16


def encode_descr(name: str, dtype: np.dtype[Any]) -> bytes:
    """JSON of ``numpy.lib.format.dtype_to_descr(dtype)``; ``ValueError`` if the dtype
    would not come back exactly (metadata, a base type under fields, new-style dtypes)."""
    descr = dtype.descr if dtype.names is not None else dtype.str  # what dtype_to_descr does
    data = json.dumps(descr, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_DESCR_BYTES:
        raise ValueError(f"snapshot array {name!r}: dtype description over {MAX_DESCR_BYTES} bytes")
    try:
        rebuilt = decode_descr(data)
    except ValueError as exc:
        raise ValueError(
            f"snapshot array {name!r}: dtype {dtype} cannot be stored: {exc}"
        ) from None
    if rebuilt != dtype or rebuilt.itemsize != dtype.itemsize or rebuilt.descr != dtype.descr:
        raise ValueError(
            f"snapshot array {name!r}: dtype {dtype} would be read back as {rebuilt}; "
            "use a plain or structured dtype"
        )
    return data


def decode_descr(data: bytes) -> np.dtype[Any]:
    """The dtype a descr JSON describes; ``ValueError`` if it is not a valid, safe one."""
    try:
        descr = _descr_from_json(json.loads(data.decode("utf-8")), 0)
        dtype = descr_to_dtype(descr)
    except (TypeError, ValueError, OverflowError, RecursionError, Warning) as exc:
        raise ValueError(f"bad dtype description {data[:200]!r}: {exc}") from None
    if dtype.hasobject or dtype.itemsize == 0:
        raise ValueError(f"dtype {dtype} holds Python objects or has itemsize 0")
    return dtype


def _descr_from_json(value: object, depth: int) -> Any:
    """Turn JSON lists back into the tuples numpy's descr uses, checking the shape."""
    if isinstance(value, str):
        return value
    if depth >= _MAX_DESCR_DEPTH or not isinstance(value, list):
        raise ValueError("not a dtype description (or nested too deeply)")
    fields: list[tuple[Any, ...]] = []
    for field in value:
        if not isinstance(field, list) or len(field) not in (2, 3):
            raise ValueError(f"bad field {field!r}")
        name = field[0]
        if isinstance(name, list) and len(name) == 2 and all(isinstance(n, str) for n in name):
            name = (name[0], name[1])  # (title, name)
        elif not isinstance(name, str):
            raise ValueError(f"bad field name {name!r}")
        sub = _descr_from_json(field[1], depth + 1)
        if len(field) == 2:
            fields.append((name, sub))
            continue
        shape = field[2]
        if not isinstance(shape, list) or not all(
            type(n) is int and 0 <= n < (1 << 31) for n in shape
        ):
            raise ValueError(f"bad field shape {shape!r}")
        fields.append((name, sub, tuple(shape)))
    return fields
