# The two commands of the README: `make demo` and `make test`. Both set up what they need on a
# fresh machine (a .venv with torch, facenet-pytorch and the package; verified model weights)
# and are quick when it is already there.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR := out/demo

# Debian packages: npm serves the offline face model; the tests also run a real mosquitto broker,
# GStreamer's RTSP server (with Debian's python3-gi) as a real camera, and Chromium (driven by
# Playwright) for the dashboard.
TEST_PACKAGES := mosquitto python3-gi gir1.2-gst-rtsp-server-1.0 \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad chromium

.PHONY: setup models demo test lint typecheck jstest unit bench clean demo-packages test-packages

setup: $(STAMP)

# apt-get runs only when a package is missing.
define install_packages
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
		| grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing" $$missing; apt-get update -q \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi
endef

# npm may come from elsewhere than Debian (NodeSource, nvm): any npm on the PATH will do.
demo-packages:
	@command -v npm >/dev/null || { apt-get update -q \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm; }

test-packages:
	$(call install_packages,$(TEST_PACKAGES))

# facenet-pytorch is installed without its dependencies: its pins would pull an old torch.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q --no-deps facenet-pytorch==2.6.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# Always run: it only checks the hashes when the cache is already complete.
models: $(STAMP) demo-packages
	$(BIN)/facestream -q models fetch dlib-resnet face-api-samples mtcnn-onnx dlib-resnet-onnx

demo: models
	$(BIN)/python -m benchmarks.synthetic demo $(DEMO_DIR)
	$(BIN)/facestream analyze $(DEMO_DIR)/demo.mp4 --out $(DEMO_DIR)/report
	@echo "open $(DEMO_DIR)/report/index.html"

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The dashboard's pure modules (store, selectors, formatting), with Node's own test runner.
jstest:
	node --test tests/js/

# pytest exits 5 when it collected no tests: that is a broken suite, not a pass.
test: models test-packages lint typecheck jstest
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

bench: models
	$(BIN)/python -m benchmarks.accuracy
	$(BIN)/python -m benchmarks.speed

clean:
	rm -rf $(VENV) out benchmarks/.cache
