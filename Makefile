# midge — see README.md. `make run` and `make test` are the two set-up commands.
GO      ?= go
BIN     := bin/midge
PKGS    := ./...
FUZZTIME ?= 20s

.PHONY: all build run test deps lint vet bench fuzz perf clean

all: build

build:
	$(GO) build -o $(BIN) .

run: build
	./$(BIN) -v

# Test dependencies that come from Debian (mosquitto and its clients, for
# interop tests) are installed when missing; nothing is silently skipped.
deps:
	@./scripts/deps.sh

test: deps vet
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

vet:
	$(GO) vet $(PKGS)

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi

# Go micro-benchmarks with allocation counts.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Run every fuzz target for FUZZTIME each.
fuzz:
	@./scripts/fuzz.sh $(FUZZTIME)

perf:
	@echo "make perf: the perf harness (perf/) is not built yet (issue 6)"; exit 1

clean:
	rm -rf bin
