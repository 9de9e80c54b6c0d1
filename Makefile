# wafplane — see README.md. Every target works from a fresh clone with Go installed.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE     ?= $(shell git log -1 --format=%cI 2>/dev/null)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
BENCHTIME ?= 2s

.PHONY: build run test bench lint clean kube-test-env browser

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/wafplane ./cmd/wafplane

# The main job on the embedded default: gateway default/demo (:10000 → 127.0.0.1:8080, block
# mode), xDS on :18000, processor on :18080 (health :18081), admin on 127.0.0.1:19000.
run: build
	./bin/wafplane serve

# Every test, integration tests against real servers included: etcd (Debian's etcd-server,
# installed when missing), kube-apiserver (built once from the Go module proxy, cached) and
# headless Chromium for the console's browser test (Debian's chromium, installed when missing).
test: lint kube-test-env browser
	$(GO) test -count=1 -race -timeout 30m ./...

browser:
	bash hack/browser.sh

kube-test-env:
	GO=$(GO) bash hack/kube-test-env.sh

# Processor (WAF, ext_proc round trip in-process and with the client in its own process),
# the false-positive gate and detection figures (once each), translation, ADS push and
# Kubernetes benchmarks.
bench: kube-test-env
	$(GO) test -run '^$$' -bench 'WAF|RoundTrip' -benchmem -benchtime $(BENCHTIME) ./processor/
	$(GO) test -run '^$$' -bench 'FalsePositives|Detection' -benchtime 1x -timeout 60m ./processor/
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 5x ./snapshot/ ./xds/
	$(GO) test -run '^$$' -bench Kubernetes -benchtime 1x ./integration/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin
