# Landmark Studio. `make demo` and `make test` do all the set-up on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
HOST   ?= 127.0.0.1
PORT   ?= 7860
ARGS   ?=

export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1
export PYTHONUNBUFFERED := 1

.PHONY: install chromium demo test test-slow test-all bench clean help

help:
	@echo "make demo      install into $(VENV) and start the app on http://$(HOST):$(PORT)"
	@echo "make test      install, then run the whole test suite (browser tests included)"
	@echo "make test-slow only the long tests marked 'slow'"
	@echo "make test-all  the suite plus the long tests marked 'slow'"
	@echo "make bench     CPU benchmarks: one table of latency, frames/s and ratio to the naive path"

$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Browser tests drive Debian's chromium through Playwright (never `playwright install`).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

demo: install
	$(PY) -m app --host $(HOST) --port $(PORT) $(ARGS)

test: install chromium
	$(PY) -m pytest $(ARGS)

test-slow: install chromium
	$(PY) -m pytest -m slow $(ARGS)

test-all: install chromium
	$(PY) -m pytest -m "slow or not slow" $(ARGS)

bench: install
	$(PY) -m bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
