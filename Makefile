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

# Go micro-benchmarks (with allocation counts) of every package that has
# them, then one short run of each `midge bench` scenario against a freshly
# spawned midge, summarised in one table.
BENCHTIME ?= 500ms
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $$(grep -rl --include='*_test.go' '^func Benchmark' . | xargs -n1 dirname | sort -u)
	$(GO) run ./perf -quick

# Run every fuzz target for FUZZTIME each.
fuzz:
	@./scripts/fuzz.sh $(FUZZTIME)

# midge vs mosquitto (installed when missing), same scenarios, A B B A
# rounds; writes perf/results/<date>.md with charts. About 10 minutes;
# e.g. PERFFLAGS="-rounds 8 -d 10s" for longer.
PERFFLAGS ?=
perf:
	$(GO) run ./perf $(PERFFLAGS)

clean:
	rm -rf bin
