# Two commands for users: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help run test lint bench migrate status fetch-events clean-var

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[embedded,dev]'
	@touch $(STAMP)

run: $(STAMP) ## start database + engine + dashboard on the simulated market (Ctrl-C stops)
	$(PY) -m engine up

# 4 workers on 2 cores: about half of a test's time is spent waiting (engine processes,
# PostgreSQL, loopback servers), so 4 finish the suite in 6-7 min where 2 took 9-10
TEST_WORKERS ?= 4
test: $(STAMP) ## run the whole test suite (TEST_WORKERS=4 parallel workers; 1 = serial)
	$(PY) -m pytest -q $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder)

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check engine web tests bench

BENCH_SUMMARY ?= var/bench-summary.tsv
# the IV peers of bench/bench_iv.py (pyproject's optional `bench` extra); a peer that does not
# install or run here is named by bench_iv with the reason
BENCH_STAMP = $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) pyproject.toml
	-$(PY) -m pip install --quiet -e '.[bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## run the benchmarks (ratios against baselines measured in the same run), then one summary table
	@mkdir -p $(dir $(BENCH_SUMMARY)); rm -f $(BENCH_SUMMARY)
	@for b in bench/bench_*.py; do echo "== $$b"; BENCH_SUMMARY=$(BENCH_SUMMARY) $(PY) $$b || exit 1; done
	@$(PY) bench/summary.py $(BENCH_SUMMARY)

migrate: $(STAMP) ## apply pending schema migrations
	$(PY) -m engine migrate

status: $(STAMP) ## database, schema version and tables
	$(PY) -m engine status

fetch-events: $(STAMP) ## load data/market_events_seed.json, then NSE/MoSPI/OEA calendars (offline: seed only, exit 0)
	$(PY) -m engine events fetch

clean-var: ## delete the embedded database and local state under ./var (asks first)
	@read -p "delete ./var (embedded database)? [y/N] " a && [ "$$a" = y ] && rm -rf var

-include ops/deploy.mk
