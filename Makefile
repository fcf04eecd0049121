# segbridge — the Makefile is the front door: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO          ?= go
BIN         := bin/segbridge
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.Version=$(VERSION)

# ONNX Runtime 1.24.1 for Linux x64, as shipped inside the npm package
# onnxruntime-node; its SHA-256 is checked before use.
ORT_VERSION := 1.24.1
ORT_SHA256  := 53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4
ORT_DIR     := .deps/onnxruntime
ORT_LIB     := $(ORT_DIR)/libonnxruntime.so.1

# Debian packages the build, the tests and the demo use: libopenjp2-7-dev's
# and libcharls-dev's headers for the build, libopenjp2-7 (JPEG 2000) and
# libcharls2 (JPEG-LS) at run time, the encoders
# and the Orthanc plugin of the compressed-series tests, and systemd-analyze
# and openssl for the deploy/ tests and the NATS cluster test.
APT_PKGS := orthanc dicom3tools mricron-data python3-pydicom python3-numpy \
            python3-nibabel python3-scipy python3-onnx curl ca-certificates \
            libopenjp2-7 libopenjp2-7-dev libopenjp2-tools openjph-tools dcmtk \
            libcharls2 libcharls-dev \
            libgdcm-tools orthanc-gdcm systemd openssl
# The status page's browser test drives Debian's chromium; the legacy Orthanc
# Explorer's AI analysis button is a plugin for orthanc-python.
APT_PKGS += chromium orthanc-python

export SEGBRIDGE_ORT_LIB := $(CURDIR)/$(ORT_LIB)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

.PHONY: deps
deps: deps-apt $(ORT_LIB) deps-npm ## install what is missing: Debian packages and the ONNX Runtime library
	@command -v $(GO) >/dev/null || { echo "Go is not installed: install Go 1.26 or newer"; exit 1; }

.PHONY: deps-apt
deps-apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  echo "installing Debian packages:$$missing"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# dcmjs (what the OHIF viewer loads SEGs with), for the tests' SEG reader
# testdata/tools/dcmjs-readseg.js; pinned, installed into a git-ignored folder.
DCMJS_VERSION := 0.52.2
.PHONY: deps-npm
deps-npm:
	@test -f .deps/node/node_modules/dcmjs/package.json && grep -q '"version": "$(DCMJS_VERSION)"' .deps/node/node_modules/dcmjs/package.json || \
	  { echo "installing dcmjs $(DCMJS_VERSION) into .deps/node"; mkdir -p .deps/node && cd .deps/node && \
	    npm install --silent --no-save --no-package-lock --no-audit --no-fund dcmjs@$(DCMJS_VERSION) >/dev/null; }

$(ORT_LIB):
	@echo "fetching ONNX Runtime $(ORT_VERSION) (npm package onnxruntime-node)"
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  (cd "$$tmp" && npm pack --silent onnxruntime-node@$(ORT_VERSION) >/dev/null && \
	   tar xzf onnxruntime-node-$(ORT_VERSION).tgz package/bin/napi-v6/linux/x64/libonnxruntime.so.1); \
	  echo "$(ORT_SHA256)  $$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" | sha256sum -c --quiet - || \
	    { echo "checksum mismatch for libonnxruntime.so.1"; exit 1; }; \
	  mkdir -p $(ORT_DIR) && mv "$$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" $(ORT_LIB)

.PHONY: build
build: ## build bin/segbridge
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/segbridge

.PHONY: test
test: deps ## install what is missing, then run unit and integration tests (real Orthanc, NATS, ONNX Runtime)
	$(GO) test -count=1 -timeout 25m ./...

.PHONY: screenshot
screenshot: deps ## rewrite docs/status-page.png and docs/orthanc-explorer-button.png from the browser tests' run
	$(GO) test -count=1 -timeout 5m -run 'TestStatusPage_Browser|TestOrthancExplorer_PythonPlugin' ./cmd/segbridge -update-screenshot

# The NATS server of a segbridge cluster: the version go.mod pins (and the
# embedded server every test runs), built from the module's source.
.PHONY: nats-server
nats-server: ## build bin/nats-server, the NATS server of a segbridge cluster (the version in go.mod)
	$(GO) build -trimpath -o bin/nats-server github.com/nats-io/nats-server/v2

.PHONY: bench
bench: deps build ## measure stage times, download, intake, memory and scale; writes bench/results.json and bench/RESULTS.md
	$(GO) test -tags bench -run TestBench -count=1 -timeout 20m -v ./bench/

# FUZZTIME is how long `make fuzz` runs each fuzz target.
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: deps ## run every fuzz target (parsers of outside bytes, decoders, the SEG path) for FUZZTIME each, default 30s
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
	  d=$$(dirname $$f); \
	  for t in $$(grep -h -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
	    echo "== $$d $$t ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$d; \
	  done; \
	done

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: models
models: build ## install the pretrained brainchop models (set SEGBRIDGE_MODELS_URL: see README, Real models)
	$(BIN) models install brainchop

.PHONY: demo
demo: deps build ## run Orthanc + segbridge on loopback, upload a real T1 series, wait for its SEG (mindgrab when installed)
	@bash testdata/demo/demo.sh

.PHONY: demo-stop
demo-stop: ## stop the demo's processes and remove its data (.demo/)
	@bash testdata/demo/demo.sh stop

.PHONY: clean
clean: ## remove build outputs
	rm -rf bin
