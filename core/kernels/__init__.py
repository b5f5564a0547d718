"""numba kernels of the engine.

numba's on-disk cache (``cache=True``) checks only the timestamp of the file that
defines a kernel, not of the modules it calls into, so a change to a helper here or
to ``core/schema.py`` could leave a stale compiled kernel in use. To rule that out,
the cache lives in a sub-directory named after a digest of every kernel source and
the schema: any change to them starts a fresh cache. The base directory is numba's
own setting (``NUMBA_CACHE_DIR``) or, unset, ``__pycache__/numba`` beside this file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numba


def _source_digest() -> str:
    here = Path(__file__).resolve().parent
    files = [*sorted(here.glob("*.py")), here.parent / "schema.py"]
    h = hashlib.blake2b(digest_size=8)
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _set_cache_dir() -> None:
    config: Any = numba.config
    base = config.CACHE_DIR or str(Path(__file__).resolve().parent / "__pycache__" / "numba")
    config.CACHE_DIR = str(Path(base) / f"kernels-{_source_digest()}")


_set_cache_dir()
