# wafplane — see README.md. Every target works from a fresh clone with Go installed.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
BENCHTIME ?= 2s

.PHONY: build run test bench lint clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/wafplane ./cmd/wafplane

# The main job on the embedded default, everything on loopback.
run: build
	./bin/wafplane processor --host 127.0.0.1 --port 18080 --health-port 18081 --tls=false --admin-address 127.0.0.1:19000

# Every test, integration tests against real servers included.
test: lint
	$(GO) test -count=1 -race -timeout 30m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./processor/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin
