# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= data/demo

.PHONY: install test demo docs clean

# Re-installs only when the project's metadata changed; `pip install -e` keeps code edits live.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(BIN)/sightx-synth $(DEMO)/raw --n 120 --seed 1 --corrupt 4 --workers 2

docs: $(STAMP)
	$(PY) tools/make_docs_images.py docs

clean:
	rm -rf $(DEMO) shards/* runs
