# The two commands of the README: `make demo` (main job on the bundled sample) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STORE  ?= demo-store
HARNESS_CODE = lmms-eval==0.7.3 qwen-vl-utils==0.0.14

.PHONY: venv demo test check bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU wheel of torch; on a GPU server install your CUDA torch into the venv first
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# the harnesses whose own code the tests run; --no-deps: only their prompt and image code is used
	$(PY) -m pip install -q --no-deps $(HARNESS_CODE)
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/keygap demo --store $(STORE)

test: venv
	$(PY) -m pytest -n 2 tests

# The written rules, checked: lint (ruff), types (mypy), import directions (import-linter). The rules and
# why: docs/ARCHITECTURE.md, "Rules that check themselves"; their settings: pyproject.toml.
check: venv
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: venv
	$(PY) benchmarks/run.py $(BENCH)

clean:
	rm -rf $(VENV) $(STORE)
