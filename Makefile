# klantbeeld — developer entry points. `make demo` and `make test` are the Quickstart.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
KB := $(VENV)/bin/klantbeeld
HOME_DIR ?= var
DEMO_CUSTOMERS ?= 50000
DEMO_AS_OF ?= 2026-11-01
export KLANTBEELD_HOME ?= $(HOME_DIR)
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: help install test lint typecheck demo demo-data demo-features bench clean

help:
	@echo "make demo    install, generate the demo shop, build features, train, score"
	@echo "make test    install with test extras, lint, type-check and run the tests"
	@echo "make bench   run the benchmarks in bench/ (large; minutes)"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

test: lint typecheck
	$(VENV)/bin/pytest -n 2 --dist loadfile -q

demo-data: install
	$(KB) demo-data --customers $(DEMO_CUSTOMERS) --out $(HOME_DIR)/demo-shop

demo-features: install
	$(KB) features --data $(HOME_DIR)/demo-shop --as-of $(DEMO_AS_OF)

demo: demo-data demo-features
	@echo
	@echo "Demo shop:         $(HOME_DIR)/demo-shop"
	@echo "Feature snapshot:  $(HOME_DIR)/features/as_of=$(DEMO_AS_OF)"

bench: install
	$(PY) bench/features.py --customers 1000000

clean:
	rm -rf $(HOME_DIR) .pytest_cache .ruff_cache .mypy_cache
