# The two commands of the README: `make book` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHAPTERS := $(shell grep -l '^kernelspec:' book/*.md book/appendix/*.md 2>/dev/null)
CHROMIUM := $(shell command -v chromium 2>/dev/null)

.PHONY: install book test unit nbval browser references bench lab clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(STAMP)

## make book: build _build/html with every chapter executed; fails on any cell error or warning.
## The cache keeps a chapter whose code is unchanged; it is emptied when what the chapters read
## besides their code changes (the library, book/data, the benchmark's report).
INPUTS = $(shell find simclr_lib book/data -type f \( -name '*.py' -o -path 'book/data/*' \) \
  -not -path '*/__pycache__/*' | sort) bench/results/latest.txt
book: $(STAMP)
	@sum=$$(cat $(INPUTS) | sha256sum | cut -c1-16); \
	if [ -d _build/.doctrees ] && [ "$$(cat _build/.inputs 2>/dev/null)" != "$$sum" ]; then \
	  echo "library, data or benchmark report changed: every chapter is executed again"; \
	  rm -rf _build/.jupyter_cache _build/.doctrees; fi; \
	$(BIN)/jupyter-book build . -W -n --keep-going && echo "$$sum" > _build/.inputs

## make test: unit tests, nbval regression checks of every chapter, and (with Chromium) the page test.
test: unit nbval browser

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "not browser" -p no:cacheprovider
	# again with 2 torch threads, the tests where threads change the kernels (issue 11)
	SIMCLR_TEST_THREADS=2 $(BIN)/python -m pytest -q -p no:cacheprovider -k "not stream" \
	  tests/test_decomposition.py tests/test_coefficient_equivalence.py tests/test_batching.py \
	  tests/test_reproducibility.py tests/test_properties.py tests/test_reliability.py

nbval: $(STAMP)
	$(BIN)/python -m pytest --nbval --nbval-current-env --nbval-cell-timeout=600 \
	  --nbval-sanitize-with tests/sanitize.cfg tests/notebooks -q -p no:cacheprovider

browser: $(STAMP)
ifneq ($(CHROMIUM),)
	$(MAKE) book
	$(BIN)/python -m pytest tests -q -m browser -p no:cacheprovider
else
	@echo "Chromium not found: skipping the browser page test (apt-get install chromium)."
endif

## make references: re-execute every chapter into tests/notebooks/ (the nbval references).
references: $(STAMP)
	@for f in $(CHAPTERS); do \
	  echo "executing $$f"; \
	  $(BIN)/jupytext --to ipynb --execute "$$f" -o "tests/notebooks/$$(basename $${f%.md}).ipynb" || exit 1; \
	done

## make bench: the performance benchmark (not part of make test).
bench: $(STAMP)
	$(BIN)/python bench/run.py

## make lab: JupyterLab in .venv (with jupytext's extension, so that the book/*.md chapters
## open as notebooks: double-click, or right-click > Open With > Jupytext Notebook), opened on book/.
LAB_STAMP := $(VENV)/.lab-installed
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings
$(LAB_STAMP): $(STAMP) requirements-lab.txt
	$(BIN)/pip install --quiet -r requirements-lab.txt
	mkdir -p $(LAB_SETTINGS)
	printf '%s\n' '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers":' \
	  '  {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}}}' \
	  > $(LAB_SETTINGS)/overrides.json
	touch $@

lab: $(LAB_STAMP)
	$(BIN)/jupyter lab book/intro.md

clean:
	rm -rf _build
