"""The README's examples run verbatim: every ```python and ```bash block in order, in one
scratch directory (except the `make` commands of "The two commands", which build the whole
book), and the quickstart prints exactly the output the README shows under it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer((ROOT / "README.md").read_text())]


def runnable() -> list[tuple[int, str, str]]:
    out = []
    for i, (lang, code) in enumerate(blocks()):
        if lang == "python" or (lang == "bash" and not code.lstrip().startswith("make ")):
            out.append((i, lang, code))
    return out


def test_the_readme_has_its_examples():
    langs = [lang for _, lang, _ in runnable()]
    assert langs.count("python") >= 2 and langs.count("bash") >= 1
    assert any(lang == "bash" and code.lstrip().startswith("make book") for lang, code in blocks())


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """``.venv/bin/python`` and ``.venv/bin/simclr-sweep`` as `make install` makes them (here:
    this interpreter, with this checkout on the path)."""
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    shims = {"python": f'exec {sys.executable} "$@"',
             "simclr-sweep": f'exec {sys.executable} -m simclr_lib "$@"'}
    for name, line in shims.items():
        (bin_ / name).write_text(f"#!/bin/sh\n{line}\n")
        (bin_ / name).chmod(0o755)
    return tmp_path


@pytest.mark.slow
def test_readme_examples_run_verbatim(venv):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    all_blocks = blocks()
    for i, lang, code in runnable():
        if lang == "python":
            cmd = [sys.executable, "-c", code]
        else:
            cmd = ["bash", "-e", "-c", code]
        run = subprocess.run(cmd, cwd=venv, env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, f"README block {i} ({lang}) failed:\n{code}\n{run.stderr}"
        after = all_blocks[i + 1] if i + 1 < len(all_blocks) else None
        if after is not None and after[0] == "text":            # the output the README shows
            assert run.stdout == after[1], (f"README block {i} printed\n{run.stdout}\n"
                                            f"but the README shows\n{after[1]}")
    assert (venv / "sup.npz").is_file() and (venv / "sup.png").stat().st_size > 1000
