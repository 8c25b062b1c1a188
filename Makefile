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
	$(BIN)/python -m pytest -q

## Benchmarks (not part of `make test`): dispatch pace, webhook answers while Kwai is slow,
## webhook ingest, click limits,
## webhooks beside idle and slow clients (installs wrk with apt-get if missing), and the
## long chaos run (it restarts the local PostgreSQL when run as root: see benchmarks/chaos.py).
bench: $(STAMP)
	status=0; \
	$(BIN)/python benchmarks/dispatch.py || status=1; \
	$(BIN)/python benchmarks/ack.py || status=1; \
	$(BIN)/python benchmarks/ingest.py || status=1; \
	$(BIN)/python benchmarks/clicks.py || status=1; \
	$(BIN)/python benchmarks/slow_clients.py || status=1; \
	$(BIN)/python benchmarks/chaos.py || status=1; \
	exit $$status

## The whole flow offline on loopback: fake Kwai, signed webhooks, dispatcher.
demo: $(STAMP)
	$(BIN)/python -m tests.demo

clean:
	rm -rf $(VENV) *.egg-info
