"""The README's first order runs as written and prints what the README says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_first_order_snippet_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## A first order.*?```python\n(.*?)```", text, re.S)
    assert code is not None
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), "README.md", "exec"), {})  # noqa: S102 - our own README
    printed = out.getvalue().splitlines()
    promised = re.findall(r"print\(.*\)\s+# (.*)", code.group(1))
    assert printed[0].startswith("1600 3.2")
    assert printed[1:] == [p.strip() for p in promised[1:]]
