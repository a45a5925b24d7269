# The two commands of the README: `make demo` and `make test`. Both set up what they need on a
# fresh machine (a .venv with torch, facenet-pytorch and the package; verified model weights)
# and are quick when it is already there.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR := out/demo

.PHONY: setup models demo test lint typecheck unit bench clean

setup: $(STAMP)

# facenet-pytorch is installed without its dependencies: its pins would pull an old torch.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q --no-deps facenet-pytorch==2.6.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# Always run: it only checks the hashes when the cache is already complete.
models: $(STAMP)
	$(BIN)/facestream -q models fetch dlib-resnet face-api-samples

demo: models
	$(BIN)/python -m benchmarks.synthetic demo $(DEMO_DIR)
	$(BIN)/facestream analyze $(DEMO_DIR)/demo.mp4 --out $(DEMO_DIR)/report
	@echo "open $(DEMO_DIR)/report/index.html"

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collected no tests: that is a broken suite, not a pass.
test: models lint typecheck
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

bench: models
	$(BIN)/python -m benchmarks.accuracy
	$(BIN)/python -m benchmarks.speed

clean:
	rm -rf $(VENV) out benchmarks/.cache
