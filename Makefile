# kolm: the two commands of the README.
#   make demo  - install into .venv and run the whole pipeline on the embedded corpus (CPU, minutes)
#   make test  - install with dev extras and run the test suite
# On a CUDA machine, install your own torch into .venv first; this Makefile keeps any torch it finds.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
TORCH_CPU ?= torch==2.13.0
CONFIG ?= configs/tiny.yaml

.PHONY: demo test lint browser install install-dev bench clean help

help:
	@echo "make demo   # install and run: kolm pipeline --config $(CONFIG)"
	@echo "make test   # install dev extras, lint (ruff) and run pytest"
	@echo "make bench  # run the benchmarks in benchmarks/ (slow, by hand)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, so the project's torch>=2.4,<3 is already satisfied and no multi-GB CUDA build is pulled.
$(VENV)/.torch: | $(PY)
	@$(PY) -c "import torch" 2>/dev/null && echo "using installed torch $$($(PY) -c 'import torch; print(torch.__version__)')" \
		|| $(PIP) install -q $(TORCH_CPU) || $(PIP) install -q torch --index-url https://download.pytorch.org/whl/cpu
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e ".[dev]"
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/kolm pipeline --config $(CONFIG)
	@echo "report: runs/$$(basename $(CONFIG) .yaml)/report/report.html"

test: install-dev lint browser
	$(VENV)/bin/pytest

# The chat-page test drives Debian's Chromium through Playwright (`playwright install` cannot download here).
# Installed once with apt, as root (CI) or through sudo; skipped when /usr/bin/chromium is already there.
# Without apt (not Debian/Ubuntu) the browser test skips itself.
browser:
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-nanum >/dev/null; }

lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: install-dev
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf runs/tiny .pytest_cache
