# keynews — the two commands a newcomer needs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test demo lint check install bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Run the daemon on the embedded default (SQLite ./keynews.db, mail as .eml in ./outbox/).
## With no network it says so and runs the offline demo on the bundled sample feeds instead.
run: $(STAMP)
	@if $(BIN)/python -c "import socket,sys; socket.setdefaulttimeout(3); socket.create_connection(('www.sec.gov', 443)).close()" 2>/dev/null; then \
		$(BIN)/keynews run; \
	else \
		echo "keynews: no network here (www.sec.gov unreachable), so the real sources cannot be polled."; \
		echo "keynews: running 'make demo' instead: bundled real feed captures served on 127.0.0.1."; \
		$(BIN)/keynews demo --out outbox; \
	fi

## Offline demo: bundled feeds -> rules -> a digest .eml in ./outbox/ (prints its path).
demo: $(STAMP)
	$(BIN)/keynews demo --out outbox

## The whole test suite (PostgreSQL tests run when KEYNEWS_TEST_DATABASE_URL is set).
test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check daemon tests bench
	$(BIN)/ruff format --check daemon tests bench
	$(BIN)/mypy daemon

check: lint test

bench: $(STAMP)
	$(BIN)/python bench/match_bench.py
	$(BIN)/python bench/rules_quality.py
	$(BIN)/python bench/deliver_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
