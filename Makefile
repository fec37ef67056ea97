# The two commands of README: `make demo` and `make test`. Both work on a fresh machine with only
# python3 and git: they create .venv, install torch 2.13.0 first when no torch is there (a bare
# `torch` requirement would pull several GB of CUDA wheels), then cryoglean itself.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
DEMO_DIR ?= cryoglean-demo

.PHONY: demo test install install-test lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e .

install-test: install
	$(BIN)/pip install -q -e ".[test]"
	@# Debian's headless chromium for the report test (tests/cryoglean/test_report_site.py opens every page);
	@# skipped when present, or when apt-get is not there / we are not root (the test then skips
	@# and names what is missing).
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	  || echo "apt-get could not install chromium/chromium-driver: the report browser test will skip"; \
	else echo "chromium/chromium-driver not installed (needs root + apt-get): the report browser test will skip"; fi
	@# topaz-em without its dependencies: tests run Topaz's own convert and precision_recall_curve
	@# as cross-checks; the tests skip with a reason if it is absent.
	@$(BIN)/python -c "import topaz" 2>/dev/null || $(BIN)/pip install -q --no-deps topaz-em || true

demo: install
	$(BIN)/cryoglean demo $(DEMO_DIR) --force

test: install-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

lint: install-test
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache build *.egg-info
