"""sightx.api: its docstring examples run as doctests, in the order a reader meets them (the module's
walk-through first, then each function's), in one scratch folder, so the documented calls cannot rot."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sightx.api as api

# The examples build on one another's files: the walk-through makes data/run, synth makes data/small.
ORDER = ["sightx.api", "sightx.api.synth", "sightx.api.shard", "sightx.api.explore", "sightx.api.preprocess", "sightx.api.Grader"]


def test_docstring_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    finder = doctest.DocTestFinder()
    tests = {t.name: t for t in finder.find(api, globs={"api": api, "os": os}) if t.examples}
    assert sorted(tests) == sorted(ORDER), "a new docstring example: add it to ORDER"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for name in ORDER:
        runner.run(tests[name])
    result = runner.summarize(verbose=False)
    assert result.failed == 0
    assert result.attempted >= 15


def test_every_public_name_is_documented() -> None:
    for name in api.__all__:
        assert getattr(api, name).__doc__, name


def test_importing_the_api_is_light() -> None:
    code = "import sys, sightx.api; print(','.join(m for m in ('torch', 'pandas', 'cv2', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    assert out == ""
