# The two commands a newcomer needs: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install migrate seed lint clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Development defaults: SQLite and the filesystem broker under var/, debug on, MFA not required
# for the demo staff log-ins. Web on 127.0.0.1:8000, a Celery worker and beat (Procfile.dev),
# all in the foreground; Ctrl-C stops all three.
run: export DJANGO_DEBUG ?= 1
run: export PRM_REQUIRE_STAFF_MFA ?= 0
run: $(STAMP)
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py seed_demo
	$(BIN)/honcho --procfile Procfile.dev start

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The benchmark on PostgreSQL (tools/bench.py): generates a million registrations on its first run
# (a few minutes), measures every target and writes BENCHMARKS.md. BENCH_ARGS="--quick --skip-load"
# for a short check; a quick or partial run (--only …) prints its table without writing the file.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $(BENCH_STAMP)

bench: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/prm_bench
bench: $(BENCH_STAMP)
	$(BIN)/python tools/bench.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf var/ .pytest_cache
