"""Serve MathJax 3 from the built site, so that the book's math renders offline.

The files come from the PyPI package ``django-static-mathjax`` (a verbatim copy of the MathJax
3.2.2 release; it is listed in requirements.txt, so ``make book`` installs it; nothing in it
depends on Django). Its ``es5/`` folder -- the bundle named by ``mathjax_path``, and the
components MathJax loads on demand: TeX extensions, fonts, the accessibility menu -- is copied
to ``_build/html/_static/mathjax/`` at the end of every HTML build. ``mathjax_path`` in
_config.yml must name a bundle of that folder as ``mathjax/<bundle>.js``; Sphinx resolves a
relative script path against ``_static/``. No page refers to a CDN for MathJax.

Not under the book's own ``_static/``: Jupyter Book links every ``.js`` file found there into
every page.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

PACKAGE = "mathjax"                    # the import name of django-static-mathjax
TARGET = "mathjax"                     # under _static/ of the built site
BUNDLES = ("tex-chtml", "tex-chtml-full", "tex-mml-chtml", "tex-svg", "tex-svg-full",
           "tex-mml-svg", "mml-chtml", "mml-svg", "tex-chtml-full-speech")


def es5_dir() -> Path:
    """The ``es5/`` folder of the installed MathJax package (ExtensionError when missing)."""
    spec = importlib.util.find_spec(PACKAGE)
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        es5 = Path(root) / "static" / "mathjax" / "es5"
        if (es5 / "startup.js").is_file():
            return es5
    raise ExtensionError("MathJax 3 not found: pip install 'django-static-mathjax>=3.2.2,<4' "
                         "(it ships the MathJax release the book serves offline)")


def bundle(app: Sphinx) -> str:
    """The file name of the bundle ``mathjax_path`` names (ExtensionError when not local)."""
    path = str(app.config.mathjax_path)
    name = path[len(TARGET) + 1:] if path.startswith(TARGET + "/") else ""
    if not name or "/" in name or not (es5_dir() / name).is_file():
        raise ExtensionError(f"mathjax_path must be '{TARGET}/<bundle>.js', one of the bundles "
                             f"in {es5_dir()}, got {path!r}")
    return name


def check(app: Sphinx) -> None:
    if app.builder.format == "html":
        bundle(app)                      # fail before reading any source, not after


def copy(app: Sphinx, exc: Exception | None) -> None:
    """Copy the bundle and the components it loads into ``_static/mathjax/``."""
    if exc is not None or app.builder.format != "html":
        return
    keep = bundle(app)
    src = es5_dir()
    dst = Path(app.outdir) / "_static" / TARGET

    def ignore(folder: str, names: list[str]) -> list[str]:
        if Path(folder) != src:          # components: keep all
            return []
        return [n for n in names if n.endswith(".js") and n != keep
                and n.removesuffix(".js") in BUNDLES]   # other combined bundles: unused

    shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True)


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", check)
    app.connect("build-finished", copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
