# klantbeeld — developer entry points. `make demo` and `make test` are the Quickstart.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
KB := $(VENV)/bin/klantbeeld
HOME_DIR ?= var
DEMO_CUSTOMERS ?= 50000
DEMO_AS_OF ?= 2026-11-01
API_PORT ?= 8000
export KLANTBEELD_HOME ?= $(HOME_DIR)
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: help install java test lint typecheck demo demo-data demo-features demo-train demo-score bench bench-public clean

help:
	@echo "make demo    install, generate the demo shop, build features, train, score, serve"
	@echo "make test    install with test extras, lint, type-check and run the tests"
	@echo "make bench   run the benchmarks in bench/ (large; minutes)"
	@echo "make bench-public  CDNOW and MovieLens-100k public benchmarks (fetches the data)"

$(VENV)/.installed: pyproject.toml
	$(MAKE) java
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Spark (the pyspark feature backend, spark_udf scoring and their tests) needs a Java
# runtime: install Debian's default-jre-headless when `java` is missing and we may
# (root, or passwordless sudo); otherwise say so and go on (the Spark tests then skip).
java:
	@if command -v java >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "java not found and no root: Spark tests will be skipped" \
	     "(install default-jre-headless)"; exit 0; fi; \
	command -v apt-get >/dev/null 2>&1 || { echo "java not found and no apt-get"; exit 0; }; \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    default-jre-headless || \
	echo "could not install default-jre-headless: Spark tests will be skipped"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

test: lint typecheck
	$(VENV)/bin/pytest -n 2 --dist loadfile -q

demo-data: install
	$(KB) demo-data --customers $(DEMO_CUSTOMERS) --out $(HOME_DIR)/demo-shop

demo-features: install
	$(KB) features --data $(HOME_DIR)/demo-shop --as-of $(DEMO_AS_OF)

demo-train: install
	$(KB) train all --data $(HOME_DIR)/demo-shop

demo-score: install
	$(KB) score --data $(HOME_DIR)/demo-shop --as-of $(DEMO_AS_OF)
	$(KB) recommend --data $(HOME_DIR)/demo-shop --placement newsletter --customers all \
		--out $(HOME_DIR)/exports/newsletter.ndjson
	$(KB) segments in-market --data $(HOME_DIR)/demo-shop --week 2026-W46 --min-prob 0.3 \
		--out $(HOME_DIR)/exports/in-market-2026-W46.csv

demo: demo-data demo-features demo-train demo-score
	@echo
	@echo "Demo shop:         $(HOME_DIR)/demo-shop"
	@echo "Feature snapshot:  $(HOME_DIR)/features/as_of=$(DEMO_AS_OF)"
	@echo "Scores:            $(HOME_DIR)/scores/"
	@echo "Newsletter export: $(HOME_DIR)/exports/newsletter.ndjson"
	@echo "MLflow UI:         $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$$(realpath $(HOME_DIR))/mlflow.db --default-artifact-root $$(realpath $(HOME_DIR))/mlartifacts"
	@echo
	@KEY=$$($(KB) keys create --scopes scores:read,recommendations:read,events:write,audiences:export,admin --label demo | tail -n 1); \
	echo "Demo API key (all scopes): $$KEY"; echo "Run first: export KEY=$$KEY"
	@echo "Starting the API on http://127.0.0.1:$(API_PORT) (Ctrl-C stops it). Try:"
	@echo "  curl -s localhost:$(API_PORT)/health; curl -s localhost:$(API_PORT)/v1/ready"
	@echo "  curl -s -H \"X-API-Key: \$$KEY\" localhost:$(API_PORT)/v1/customers/C0000001/scores"
	@echo "  curl -s -H \"X-API-Key: \$$KEY\" 'localhost:$(API_PORT)/v1/customers/C0000001/recommendations?placement=newsletter&n=4'"
	@echo "  curl -s -H \"X-API-Key: \$$KEY\" -X POST localhost:$(API_PORT)/v1/recommendations/batch -H 'content-type: application/json' -d '{\"placement\":\"newsletter\",\"customer_ids\":[\"C0000001\",\"C0000002\"]}'"
	@echo "  curl -s -H \"X-API-Key: \$$KEY\" -X POST localhost:$(API_PORT)/v1/events -H 'content-type: application/json' -d '{\"events\":[{\"event_id\":\"demo-1\",\"event_type\":\"purchase\",\"customer_id\":\"C0000001\",\"item_id\":\"I00104\"}]}'"
	@echo "  curl -s -H \"X-API-Key: \$$KEY\" 'localhost:$(API_PORT)/v1/audiences/churn?min_score=0.5&consent=ads&hashed=true' | head"
	@echo "  curl -s -H \"X-API-Key: \$$KEY\" localhost:$(API_PORT)/metrics | grep recommendations"
	$(KB) serve --data $(HOME_DIR)/demo-shop --port $(API_PORT) --workers 2

bench: install
	$(PY) -m bench.features --customers 1000000 --generator quick
	$(PY) -m bench.train
	$(PY) -m bench.recommend
	$(PY) -m bench.movielens
	$(PY) -m bench.serve

PUBLIC_DATA ?= $(HOME)/.cache/klantbeeld/public
FETCH_PUBLIC ?= ../shared/data/fetch-public-data.sh
bench-public: install
	$(FETCH_PUBLIC) $(PUBLIC_DATA)
	$(PY) -m bench.public.cdnow --data $(PUBLIC_DATA) --markdown docs/benchmarks.md
	$(PY) -m bench.public.cdnow_clv --data $(PUBLIC_DATA) --markdown docs/benchmarks.md
	$(PY) -m bench.movielens --path $(PUBLIC_DATA)/ml-100k/ml-100k.inter

clean:
	rm -rf $(HOME_DIR) .pytest_cache .ruff_cache .mypy_cache
