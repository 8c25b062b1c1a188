# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench demo install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Start the service on the embedded SQLite default, with the dispatcher.
run: $(STAMP)
	$(BIN)/kwai-bridge serve --with-worker --port $${PORT:-8000}

## Install and run the whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 3 --dist loadfile

## Benchmarks (not part of `make test`): dispatch pace, webhook answers while Kwai is slow,
## the dispatcher at a million events, webhook ingest (wrk, and instructions per webhook under
## callgrind, which installs valgrind with apt-get if missing), click limits, storefront events against
## webhooks (wrk), webhooks beside idle and
## slow clients (installs wrk with apt-get if missing), ingest with metrics on and off and a
## /metrics scrape, ingest with 1,000 stores against 1, the admin API's event pages over
## 1,000,000 events, the console's pages with 1,000 stores and 1,000,000 events, reconciling
## a store with 100,000 orders (fake WooCommerce API on loopback), and the
## long chaos run (it restarts the local PostgreSQL when run as root: see benchmarks/chaos.py).
bench: $(STAMP)
	status=0; \
	$(BIN)/python benchmarks/dispatch.py || status=1; \
	$(BIN)/python benchmarks/ack.py || status=1; \
	$(BIN)/python benchmarks/scale.py || status=1; \
	$(BIN)/python benchmarks/ingest.py || status=1; \
	$(BIN)/python benchmarks/instructions.py || status=1; \
	$(BIN)/python benchmarks/clicks.py || status=1; \
	$(BIN)/python benchmarks/storefront.py || status=1; \
	$(BIN)/python benchmarks/slow_clients.py || status=1; \
	$(BIN)/python benchmarks/metrics.py || status=1; \
	$(BIN)/python benchmarks/store_count.py || status=1; \
	$(BIN)/python benchmarks/records_pages.py || status=1; \
	$(BIN)/python benchmarks/console.py || status=1; \
	$(BIN)/python benchmarks/reconcile.py || status=1; \
	$(BIN)/python benchmarks/chaos.py || status=1; \
	exit $$status

## The whole flow offline on loopback: fake Kwai, signed webhooks, dispatcher, then connect,
## reconcile and the accuracy report against the fake platform APIs.
demo: $(STAMP)
	$(BIN)/python -m tests.demo

clean:
	rm -rf $(VENV) *.egg-info
