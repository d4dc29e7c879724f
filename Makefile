# Shop: `make run` starts everything locally; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Two workers fit this 2-core machine; override with `make test PYTEST_WORKERS=4`.
PYTEST_WORKERS ?= 2

.PHONY: help install run demo test bench bench-scale lint format clean deploy-check lock

help:
	@echo "make run    start the services, the relay and a local SQS endpoint (SQLite by default)"
	@echo "make demo   with make run running: the whole flow, narrated (shopctl demo)"
	@echo "make test   install what is needed and run the whole suite (MySQL at TEST_MYSQL_URL)"
	@echo "make bench  the load benchmark on MySQL (BENCH_MYSQL_URL), results in bench/results/"
	@echo "make bench-scale  the bench on 1,000,000 products and 5,000,000 orders (BENCH_SCALE_ARGS)"
	@echo "make lint   ruff and mypy"
	@echo "make clean  remove var/ (local databases, keys, LocalStack) and the virtualenv"
	@echo "make deploy-check  validate docker-compose.yml, the Kubernetes overlays and the Dockerfiles"
	@echo "make lock   regenerate deploy/requirements.txt (the images' pins) from pyproject.toml"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,bench]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/python -m devstack run

# Against a running system (`make run`, or compose with the *_SERVICE_URL variables set).
demo: install
	$(BIN)/shopctl demo

test: install
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# Ports 8080-8082 and 4566 must be free: the bench runs the system exactly as `make run` does.
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

# As `make bench`, on databases loaded with a large catalogue and years of orders first
# (minutes). BENCH_SCALE_ARGS="--products 20000 --orders 100000" tries it small; "--reuse"
# keeps a load of the same sizes from the last run.
bench-scale: install
	$(BIN)/python -m bench.scale $(BENCH_SCALE_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The deploy tools (kubernetes-validate, hadolint) are pinned in pyproject's `deploy` extra.
$(VENV)/.installed-deploy: pyproject.toml | $(VENV)/.installed
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,bench,deploy]'
	touch $@

deploy-check: $(VENV)/.installed-deploy
	BIN=$(BIN) deploy/check.sh

lock: install
	$(BIN)/python deploy/lock.py

clean:
	rm -rf var $(VENV)
