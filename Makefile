# Two commands set everything up on a fresh machine with python3: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PORT   ?= 8000

.PHONY: run test setup install install-dev migrate lint bench clean browser realdapr \
        dapr dapr-services dapr-stop dapr-run dapr-smoke

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(PY)
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(PY)
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Database, seed inventory (once) and the manager account (first run only).
setup: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed

# supervisord (supervisord.conf) runs the worker and the web server and restarts either one that
# dies; Ctrl-C stops both.
WEB_CONCURRENCY ?= 2
run: setup
	@mkdir -p var
	PATH="$(CURDIR)/$(BIN):$$PATH" PORT=$(PORT) WEB_CONCURRENCY=$(WEB_CONCURRENCY) \
	  $(BIN)/supervisord -c supervisord.conf

# Debian's chromium for the browser tests (Playwright drives it; nothing is downloaded by Playwright).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Real Dapr for tests/realdapr/ (the fixture and the differential suite against daprd): built from
# Go modules whenever Go is here (seconds once built, 15-20 minutes cold), with Debian's Redis;
# without Go those tests skip and say so. On CI a daprd missing with Go present fails them.
realdapr:
	@if command -v go >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory dapr || exit 1; \
	  command -v redis-server >/dev/null 2>&1 || { echo "installing Debian's redis-server for the real-Dapr suites"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }; \
	else echo "real-Dapr suites: SKIPPED (no Go)"; fi

test: install-dev browser realdapr
	$(BIN)/ruff check .
	$(BIN)/pytest
	@# Stock reservation and the ledger rely on the database's locking: run those tests again on
	@# PostgreSQL (a private server from Debian, started by tools/postgres.sh; TEST_POSTGRES_URL
	@# names another). On CI (CI=true) a PostgreSQL that cannot be started fails the run.
	@url=$${TEST_POSTGRES_URL:-$$(tools/postgres.sh)} || url=; \
	if [ -z "$$url" ]; then \
	  if [ "$${CI:-}" = true ]; then echo "PostgreSQL could not be started: CI needs the PostgreSQL pass" >&2; exit 1; fi; \
	  echo "no PostgreSQL could be started: the PostgreSQL pass is SKIPPED"; exit 0; \
	fi; \
	echo "PostgreSQL pass: services and workflow tests again on $${url%%:*}://...@$${url##*@}"; \
	DATABASE_URL=$$url $(BIN)/pytest orders/tests/test_services_*.py orders/tests/test_workflows_order_processing.py

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install-dev
	$(BIN)/pip install --quiet -r requirements-bench.txt
	$(PY) -m bench

# Real Dapr (docs/dapr.md): daprd, placement and scheduler built from Go modules into ~/.dapr,
# laid out as `dapr init --slim` lays them out; a second run with those in place takes a second.
dapr:
	bash tools/dapr/build.sh

# Redis, placement and scheduler, which a slim install does not start (var/dapr/ holds their data).
dapr-services: dapr
	bash tools/dapr/services.sh start

dapr-stop:
	bash tools/dapr/services.sh stop

# `dapr run -f .` with the Dapr CLI when there is one; tools/dapr/run_file.py runs dapr.yaml the
# same way when there is none (the Go module proxy does not serve the CLI's source).
dapr-run: setup dapr-services
	@cli="$${DAPR_RUNTIME_PATH:-$$HOME}/.dapr/bin/dapr"; \
	if [ ! -x "$$cli" ]; then cli=$$(command -v dapr || true); fi; \
	if [ -n "$$cli" ]; then echo "$$cli run -f ."; exec "$$cli" run -f .; fi; \
	echo "no Dapr CLI: tools/dapr/run_file.py runs dapr.yaml"; exec $(PY) tools/dapr/run_file.py .

# One small order completes, one large order is approved in the admin and completes, on daprd.
dapr-smoke: install dapr
	$(PY) tools/dapr/smoke.py

clean:
	rm -rf $(VENV) var
