# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_DATA ?= data/standin
DEMO_RUN ?= runs/demo

.PHONY: install demo detect-demo test browser clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/simpsons data standin --out $(DEMO_DATA) --classes 50
	rm -rf $(DEMO_RUN)
	$(BIN)/simpsons train --data $(DEMO_DATA) --out $(DEMO_RUN) --config configs/demo.yaml

# The detector on the stand-in: scenes composed from its images, about 16 minutes on a 2-core CPU.
detect-demo: $(INSTALLED)
	$(BIN)/simpsons data standin --out $(DEMO_DATA) --classes 50
	rm -rf runs/detect-demo
	$(BIN)/simpsons detect train --data $(DEMO_DATA) --out runs/detect-demo

test: $(INSTALLED) browser
	$(BIN)/python -m pytest

# Headless Chromium for the browser tests, from Debian's packages (Playwright drives it; it downloads nothing).
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf $(VENV) runs data .pytest_cache
