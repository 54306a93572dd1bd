# regcred-webhook. `make demo` shows it working on a local control plane;
# `make test` runs every test (unit, chart, end-to-end). See README.md.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

VERSION ?= 0.1.0
IMAGE ?= ghcr.io/regcred-webhook/regcred-webhook:$(VERSION)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN := bin/regcred-webhook

.PHONY: all build test test-unit lint fmt manifests tools demo image bench clean

all: build

build: ## Build the static binary into bin/.
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/regcred-webhook

test-unit: ## Unit and chart tests (no control plane).
	go test -race -count=1 $$(go list ./... | grep -v /test/e2e)

test: lint ## Everything CI runs: lint, unit, chart and end-to-end tests.
	bash hack/tools.sh all
	go test -race -count=1 $$(go list ./... | grep -v /test/e2e)
	go test -count=1 -timeout 30m ./test/e2e/...

lint: ## gofmt, go vet and staticcheck (pinned, built from the Go module proxy).
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change: $$out (run make fmt)"; exit 1; fi
	go vet ./...
	bash hack/tools.sh staticcheck
	$$(bash hack/tools.sh staticcheck-path) ./...

fmt: ## Format the Go code.
	gofmt -w $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')

manifests: ## Render deploy/regcred-webhook.yaml from the chart.
	bash hack/tools.sh helm
	bash hack/manifests.sh

tools: ## Build the pinned helm, staticcheck, kube-apiserver, kube-controller-manager and etcd into the cache.
	bash hack/tools.sh all

bench: ## Benchmarks of the hot path (see docs/performance.md).
	go test -run '^$$' -bench . -benchmem ./pkg/inject/ ./pkg/registry/

demo: build ## Start a local control plane and the webhook, and show it patching Pods.
	bash hack/tools.sh control-plane
	go run ./hack/demo

image: ## Build the container image (needs a Docker engine).
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean:
	rm -rf bin/
