# Landmark Studio. `make demo` and `make test` do all the set-up on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# requirements.txt is the full lock (every package pinned), generated from requirements.in by
# `make lock`; a changed lock changes this stamp's name, so the next make reinstalls (its content
# decides, not its date: a checkout or an unchanged `make lock` does not reinstall).
STAMP  := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
HOST   ?= 127.0.0.1
PORT   ?= 7860
ARGS   ?=

export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1
export PYTHONUNBUFFERED := 1

# pip-compile (pip-tools, pinned in the lock): resolves requirements.in into requirements.txt.
# --allow-unsafe pins pip and setuptools too; no index or wheel-folder lines (pip's own config says
# where the torch wheels lie); CUSTOM_COMPILE_COMMAND is the command the file's header names.
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(PY) -m piptools compile --quiet --strip-extras \
               --allow-unsafe --no-emit-index-url --no-emit-find-links --output-file requirements.txt

.PHONY: install chromium demo test test-slow test-all bench lock upgrade clean help

help:
	@echo "make demo      install into $(VENV) and start the app on http://$(HOST):$(PORT)"
	@echo "make test      install, then run the whole test suite (browser tests included)"
	@echo "make test-slow only the long tests marked 'slow'"
	@echo "make test-all  the suite plus the long tests marked 'slow'"
	@echo "make bench     CPU benchmarks: one table of latency, frames/s and ratio to the naive path"
	@echo "make lock      re-pin requirements.txt after editing requirements.in (keeps the other pins;"
	@echo "               P=numpy upgrades that one package)"
	@echo "make upgrade   re-pin every package to its newest release allowed by requirements.in"

$(STAMP):
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip check
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

# pytest exits 5 when no test is selected: no test marked `slow` is not a failure here.
test-slow: install chromium
	$(PY) -m pytest -m slow $(ARGS) || { status=$$?; [ $$status -eq 5 ] && echo "no tests marked slow"; \
	  [ $$status -eq 5 ]; }

test-all: install chromium
	$(PY) -m pytest -m "slow or not slow" $(ARGS)

bench: install
	$(PY) -m bench $(ARGS)

lock: install
	$(PIP_COMPILE) $(if $(P),--upgrade-package $(P)) requirements.in

upgrade: install
	$(PIP_COMPILE) --upgrade requirements.in

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
