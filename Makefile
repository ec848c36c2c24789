# The two commands a user needs: `make demo` and `make test`. Each builds its own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# chromium: the explorer's page test drives Debian's browser through Playwright (never a downloaded one).
APT_PACKAGES := prometheus prometheus-alertmanager chromium

.PHONY: demo test bench docs screenshots binaries clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

demo: $(VENV)/.installed  ## run the demo app with the exporter; prints the /metrics URL
	$(BIN)/python -m tornado_memory_exporter demo

# As root on Debian, fetch the real Prometheus/Alertmanager the integration tests talk to, and the
# Chromium the explorer's page test drives.
binaries:
	@if command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null \
		&& command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(APT_PACKAGES) >/dev/null; \
	else echo "note: prometheus/promtool/alertmanager/chromium missing; tests needing them will skip"; fi

# TypeScript types of Grafana's dashboard model: tests/mixin/test_dashboards.py type-checks the shipped
# dashboards with tsc (about 35 MB, a few seconds; pinned by the lockfile).
GRAFANA_SCHEMA := tests/grafana_schema
$(GRAFANA_SCHEMA)/node_modules/.package-lock.json: $(GRAFANA_SCHEMA)/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix $(GRAFANA_SCHEMA) --no-audit --no-fund --ignore-scripts --silent; \
	else echo "note: npm missing; the dashboard type check will skip"; fi

# The suite here (leg py3.11), then, as root on Debian, the version legs (.ci/legs.py: Python
# 3.13/3.14/3.15 in a cached debootstrap root, Prometheus 3, oldest/newest dependencies).
# `make test LEGS=py3.11` runs the suite alone; PYTEST_ARGS narrows it.
LEGS ?= all
test: $(VENV)/.installed-test binaries $(GRAFANA_SCHEMA)/node_modules/.package-lock.json  ## install everything the tests need, run the suite and the version legs
	$(PYTHON) .ci/legs.py --python $(BIN)/python --legs $(LEGS) -- $(PYTEST_ARGS)

bench: $(VENV)/.installed-test  ## benchmarks (not part of the test run)
	$(BIN)/python -m bench

# The documentation site (mkdocs.yml): regenerate the pages made from the code, then serve it with
# live reload on http://127.0.0.1:8000/ (the suite builds it with --strict).
docs: $(VENV)/.installed-test  ## serve the documentation site locally
	$(BIN)/python docs/gen_pages.py
	$(BIN)/python -m mkdocs serve --dev-addr 127.0.0.1:8000

# The pictures of the site: the demo's alerts page, each dashboard row's queries and the explorer,
# from a real demo, Prometheus and Chromium (binaries); a few minutes.
screenshots: $(VENV)/.installed-test binaries  ## regenerate docs/screenshots/ and docs/explorer.png
	$(BIN)/python docs/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis $(GRAFANA_SCHEMA)/node_modules
