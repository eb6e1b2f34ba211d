"""Point the book's Thebe ("Live Code") kernels at the Binder environment of binder/.

``launch_buttons.thebe: true`` in _config.yml makes sphinx-book-theme add the Live Code button
and sphinx-thebe write a ``<script type="text/x-thebe-config">`` into every page, with the
repository and branch of ``repository:`` and the kernel of the page's kernelspec. sphinx-thebe
0.3 leaves out the BinderHub, so Thebe would always use its built-in default; this hook adds
``binderUrl`` (``launch_buttons.binderhub_url``) and ``repoProvider: "github"`` to that script,
so Live Code and the rocket's Binder link start the same environment (repo2docker builds it
from ``binder/`` of that repository).
"""
from __future__ import annotations

import json

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

MARK = 'type="text/x-thebe-config"'


def binderhub_url(app: Sphinx) -> str:
    launch = (app.config.html_theme_options or {}).get("launch_buttons", {}) or {}
    return str(launch.get("binderhub_url") or "").rstrip("/")


def check(app: Sphinx) -> None:
    launch = (app.config.html_theme_options or {}).get("launch_buttons", {}) or {}
    if launch.get("thebe") and not binderhub_url(app).startswith("https://"):
        raise ExtensionError("launch_buttons.thebe needs launch_buttons.binderhub_url "
                             "(an https:// BinderHub, e.g. https://mybinder.org)")


def add_binder_url(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    url = binderhub_url(app)
    if not url:
        return
    for node in doctree.findall(nodes.raw):
        text = node.astext()
        if MARK in text and "binderUrl" not in text:
            new = text.replace("binderOptions: {",
                               f'binderOptions: {{\n            binderUrl: {json.dumps(url)},'
                               '\n            repoProvider: "github",', 1)
            node.replace_self(nodes.raw(text=new, format="html"))


def dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict,
                   doctree) -> None:
    """Drop repeated script tags: sphinx-thebe 0.3.1 registers its inline configuration
    (``const THEBE_JS_URL = ...``) twice under Sphinx 7, and the second copy throws a
    SyntaxError ("Identifier 'THEBE_JS_URL' has already been declared") on every page."""
    files, seen = [], set()
    for js in context.get("script_files", []):
        # the two copies differ only in a filename of None and of "" (an inline script)
        key = (str(getattr(js, "filename", js) or ""),
               json.dumps(getattr(js, "attributes", {}), sort_keys=True, default=str))
        if key not in seen:
            seen.add(key)
            files.append(js)
    context["script_files"] = files


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", check)
    app.connect("html-page-context", dedupe_scripts, priority=900)
    # after sphinx-thebe's own doctree-resolved hook (priority 500), which writes the script
    app.connect("doctree-resolved", add_binder_url, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
