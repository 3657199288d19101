# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= data/demo

.PHONY: install lint test fuzz fuzz-serve demo serve docs docs-site docs-serve kernel clean

# Re-installs only when the project's metadata changed; `pip install -e` keeps code edits live.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Lint, format check and types first: seconds, and they catch what a long test run would only find late.
lint: $(STAMP)
	$(BIN)/ruff check sightx tests tools
	$(BIN)/ruff format --check sightx tests tools
	$(BIN)/mypy

test: lint
	$(PY) -m pytest

# The fuzz tests at length, unseeded (make test runs a few seeded examples of each): the decoders, then the server.
fuzz: $(STAMP) fuzz-serve
	SIGHTX_FUZZ_EXAMPLES=$${SIGHTX_FUZZ_EXAMPLES:-20000} $(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz.py

# The server fuzzed over real HTTP on 127.0.0.1: requests built by hypothesis (methods, paths, Host, tokens, content
# types, multipart bodies of mutated photos) and raw HTTP with lying lengths; a few minutes.
fuzz-serve: $(STAMP)
	SIGHTX_FUZZ_SERVE_EXAMPLES=$${SIGHTX_FUZZ_SERVE_EXAMPLES:-2000} $(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz_serve.py

# The main job end to end on synthetic data, from the download as Kaggle ships it (nothing unzipped):
# generate the competition zip -> explore it -> shard straight from it -> explore the shards -> train -> grade its test images.
ZIP := $(DEMO)/download/diabetic-retinopathy-detection.zip
demo: $(STAMP)
	rm -rf $(DEMO)/download
	$(BIN)/sightx-synth $(DEMO)/download --archive kaggle --n 600 --seed 1 --corrupt 4 --with-test 10 --workers 2
	$(BIN)/sightx-explore $(ZIP) --out $(DEMO)/reports/raw --workers 2
	$(BIN)/sightx-shard $(ZIP) $(DEMO)/shards --size 256 --shard-size 50 --val-fraction 0.2 --workers 2
	$(BIN)/sightx-explore $(DEMO)/shards --out $(DEMO)/reports/shards --raw $(ZIP) --workers 2
	rm -rf $(DEMO)/run
	$(BIN)/sightx-train $(DEMO)/shards --out $(DEMO)/run --arch resnet18 --image-size 160 --epochs 8 \
		--batch-size 32 --lr 1e-3 --workers 1
	$(BIN)/sightx-predict $(ZIP) --checkpoint $(DEMO)/run/best.pt --out $(DEMO)/predictions.csv --workers 2
	@echo "reports: $(DEMO)/reports/raw/report.html $(DEMO)/reports/shards/report.html"
	@echo "run: $(DEMO)/run (metrics.jsonl, best.pt, confusion.png, learning_curve.png); predictions: $(DEMO)/predictions.csv"

# The page and REST API on the checkpoint `make demo` trained: http://127.0.0.1:8000
serve: $(STAMP)
	@test -f $(DEMO)/run/best.pt || { echo "no $(DEMO)/run/best.pt: run 'make demo' first"; exit 1; }
	$(BIN)/sightx-serve --checkpoint $(DEMO)/run/best.pt

# The project's venv as the Jupyter kernel "SightX" (ipykernel is an optional extra).
kernel: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,kernel]'
	$(PY) -m ipykernel install --user --name sightx --display-name SightX
	@echo "in Jupyter: Kernel > Change kernel > SightX; check with: %run -m sightx.doctor"

# The pictures under docs/, from synthetic data: the charts, and the tutorial's run for real with its reports and
# server page shot in headless Chromium (a few minutes on 2 cores; Debian's chromium + chromium-driver, never a download).
docs: $(STAMP)
	$(PY) tools/make_docs_images.py docs

# The documentation site (mkdocs.yml) into site/; --strict: a broken link, a bad anchor or a page missing
# from the nav fails it. `make test` builds it too (tests/test_docs.py).
docs-site: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The same, served with live reload at http://127.0.0.1:8001
docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict -a 127.0.0.1:8001

clean:
	rm -rf $(DEMO) shards/* runs site
