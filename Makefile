# make test: set up .venv (if missing) and run the test suite.
# make demo: set up .venv (if missing) and run the main job.
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.14.1 torchvision==0.29.1
FMNIST_DIR  ?= /usr/share/datasets/fashion-mnist
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.ghn_pyg-installed

.PHONY: test demo setup data bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev,plots,export]'
	touch $(STAMP)

# Fashion-MNIST from Debian, when apt is available and the files are not there yet.
data:
	@if [ -f $(FMNIST_DIR)/t10k-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST found in $(FMNIST_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y dataset-fashion-mnist >/dev/null || \
	  { $$SUDO apt-get update >/dev/null && $$SUDO apt-get install -y dataset-fashion-mnist >/dev/null; } || \
	  echo "warning: could not install dataset-fashion-mnist; tests that need it will skip"; \
	else \
	  echo "warning: apt-get not available; set GHN_PYG_DATA to a Fashion-MNIST folder"; \
	fi

test: setup data
	$(PY) -m pytest -q

demo: setup data
	$(VENV)/bin/ghn-pyg demo

bench: setup
	$(PY) scripts/bench_graph.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
