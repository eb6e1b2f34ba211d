"""The nbval references in tests/notebooks/ against the chapters in book/.

* every executable chapter has a reference and every reference has a chapter;
* a reference is stale when its code cells differ from its chapter's (re-run `make references`);
* every verdict line the chapters print (``sl.verdict``) says ``holds: yes``, except the
  findings registered in tests/findings.txt, which must say ``holds: NO``: a verdict whose
  outcome differs from its registration, in either direction, fails, and so does a registered
  finding that no chapter prints. nbval (``make nbval``) then re-executes each reference and
  fails if a fresh run prints anything else.
"""
from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
REFS = ROOT / "tests" / "notebooks"
CHAPTERS = sorted(p for p in [*ROOT.glob("book/*.md"), *ROOT.glob("book/appendix/*.md")]
                  if "\nkernelspec:" in p.read_text())
VERDICT = re.compile(r"^\[(?P<result>[^\]]+)\] predicted: .*; holds: (?P<holds>yes|NO)$", re.M)


def _code(nb) -> list[str]:
    return [c.source.strip() for c in nb.cells if c.cell_type == "code"]


def _text(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append(o.get("text", ""))
            elif "text/plain" in o.get("data", {}):
                out.append(o["data"]["text/plain"])
    return "\n".join(out)


def _findings() -> dict[str, str]:
    """The registry: ``result | measured cause`` per line (``#`` starts a comment)."""
    path = ROOT / "tests" / "findings.txt"
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            result, _, cause = line.partition("|")
            assert cause.strip(), f"finding {result.strip()!r} is registered without a cause"
            out[result.strip()] = cause.strip()
    return out


def test_every_chapter_has_a_reference_and_back():
    chapters = {p.stem for p in CHAPTERS}
    refs = {p.stem for p in REFS.glob("*.ipynb")}
    assert chapters, "no executable chapters found in book/"
    assert chapters == refs, (f"missing references: {sorted(chapters - refs)}, "
                              f"orphan references: {sorted(refs - chapters)}; run `make references`")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_reference_is_not_stale(chapter: Path):
    ref = REFS / f"{chapter.stem}.ipynb"
    assert ref.exists(), f"{ref} missing; run `make references`"
    assert _code(jupytext.read(chapter)) == _code(nbformat.read(ref, as_version=4)), (
        f"{ref.name} is stale: its code differs from {chapter.relative_to(ROOT)}; run `make references`")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_reference_was_fully_executed(chapter: Path):
    nb = nbformat.read(REFS / f"{chapter.stem}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "a code cell was never executed"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{chapter.stem}: error outputs {errors[:1]}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_verdicts_match_the_registry(chapter: Path):
    text = _text(nbformat.read(REFS / f"{chapter.stem}.ipynb", as_version=4))
    findings = _findings()
    failed = [m.group(0) for m in VERDICT.finditer(text)
              if (m.group("holds") == "NO") != (m.group("result") in findings)]
    assert not failed, ("verdicts whose outcome differs from tests/findings.txt (a NO must be "
                        "registered with its cause; a registered finding must say NO):\n"
                        + "\n".join(failed))


def test_every_registered_finding_is_printed():
    printed = {m.group("result") for c in CHAPTERS
               for m in VERDICT.finditer(_text(nbformat.read(REFS / f"{c.stem}.ipynb", as_version=4)))}
    missing = sorted(set(_findings()) - printed)
    assert not missing, f"registered findings no chapter prints: {missing}"


def test_registry_check_can_fail():
    """The registry comparison flags an unregistered NO and a registered yes."""
    text = "[A] predicted: x; measured: y; holds: NO\n[B] predicted: x; measured: y; holds: yes"
    findings = {"B": "cause"}
    bad = [m.group("result") for m in VERDICT.finditer(text)
           if (m.group("holds") == "NO") != (m.group("result") in findings)]
    assert bad == ["A", "B"]


def test_theorem_chapters_print_verdicts():
    # the setting chapter only demonstrates definitions that hold by construction (unit tests)
    for stem in ["intro", "supervised", "pretraining", "finetuning", "label_complexity"]:
        path = REFS / f"{stem}.ipynb"
        if not (ROOT / "book" / f"{stem}.md").exists():
            pytest.fail(f"chapter book/{stem}.md is missing")
        assert VERDICT.search(_text(nbformat.read(path, as_version=4))), f"{stem} prints no verdict"
