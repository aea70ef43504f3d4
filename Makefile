# midge — see README.md. `make run` and `make test` are the two set-up commands.
GO      ?= go
BIN     := bin/midge
PKGS    := ./...
FUZZTIME ?= 20s

.PHONY: all build run test deps lint vet bench fuzz perf crash soak clean mosquitto-suite man install uninstall cross cluster-chaos

all: build

build:
	$(GO) build -o $(BIN) .

run: build
	./$(BIN) -v

# Man pages for midge and each subcommand, made from their --help text.
PREFIX ?= /usr/local
MANDIR ?= $(PREFIX)/share/man
man: build
	./$(BIN) man bin/man

# Test dependencies that come from Debian (mosquitto and its clients, for
# interop tests) are installed when missing; nothing is silently skipped.
deps:
	@./scripts/deps.sh

# The Go tests (the vendored gnet is its own module, not in ./...: its
# patch's tests run through midge's module, third_party/gnet/PATCHES.md),
# then mosquitto's own broker tests (mosquitto-suite below).
test: deps vet
	$(GO) test -race -count=1 -timeout 30m $(PKGS) github.com/panjf2000/gnet/v2
	./scripts/mosquitto-suite.sh

# mosquitto 2.0.11's own broker tests (Debian's source package, fetched
# into .cache/) against Debian's mosquitto and midge; fails when midge fails
# a test mosquitto passes that docs/mosquitto-suite.md does not list.
# About 5 minutes, both brokers (part of `make test`). e.g. SUITEFLAGS="-brokers midge -run '^07-' -v".
SUITEFLAGS ?=
mosquitto-suite:
	./scripts/mosquitto-suite.sh $(SUITEFLAGS)

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
# rounds; writes perf/results/<date>.md with charts, then one midge against a
# three-node midge cluster (perf/clustered.go). About 15 minutes;
# e.g. PERFFLAGS="-rounds 8 -d 10s" for longer.
PERFFLAGS ?=
perf:
	$(GO) run ./perf $(PERFFLAGS)

# kill -9 harness (test/crash): CRASH_ROUNDS rounds with MQTT 3.1.1 sessions,
# then as many with MQTT 5; fails on any QoS 2 loss or duplicate, or QoS 1
# loss. `go test ./test/crash` runs 15 + 15 rounds.
CRASH_ROUNDS ?= 300
crash:
	$(GO) build -o $(BIN) .
	$(GO) run ./test/crash -q -broker $(BIN) -rounds $(CRASH_ROUNDS)
	$(GO) run ./test/crash -q -broker $(BIN) -rounds $(CRASH_ROUNDS) -v5

# Partitions with a real (virtual) network, root only, not in `make test`
# (test/chaos): three midge processes in network namespaces on a bridge;
# n3's link is unplugged, then blackholed, and plugged back each time;
# fails on any broken check, prints the times. About a minute.
# e.g. CHAOSFLAGS="-cuts blackhole".
CHAOSFLAGS ?=
cluster-chaos:
	@[ "$$(id -u)" = 0 ] || { echo "cluster-chaos: cannot run: it must run as root (network namespaces)" >&2; exit 2; }
	$(GO) build -o $(BIN) .
	$(GO) run ./test/chaos -midge $(BIN) $(CHAOSFLAGS)

# The soak (issue 20): 1,000 clients of every kind against midge with
# persistence for SOAKTIME, every delivery guarantee checked as it goes;
# writes perf/results/<date>-soak.md and .png, fails on a broken guarantee or
# RSS/store size that climbs. Not in CI (make test runs a 2-minute version).
# e.g. make soak SOAKTIME=1h SOAKFLAGS="-clients 2000 -rate 600"
SOAKTIME ?= 30m
SOAKFLAGS ?=
soak: build
	nice $(GO) run ./soak -midge $(BIN) -d $(SOAKTIME) $(SOAKFLAGS)

# Static, stripped binaries for boards: linux/arm64, arm v7 and v6, riscv64
# and mipsle (softfloat), with their sizes, in bin/cross/. mipsle has no
# persistence: pebble v1.1.5 (the store) names its 32-bit MIPS constants in
# files ending _mips.go, which Go reads as GOARCH=mips only, so the store is
# left out there (store/nostore.go). The cluster is left out of every board
# build (-tags nocluster; CROSS_TAGS= keeps it). CROSS_TARGETS="arm64 armv7"
# for a subset.
cross:
	@GO=$(GO) ./scripts/cross.sh

# Installs the broker, its systemd unit, the default configuration
# (/etc/midge/midge.conf with include_dir /etc/midge/conf.d; an existing
# midge.conf is kept), a logrotate file and the man pages. PREFIX and
# DESTDIR as usual: make install DESTDIR=/tmp/stage PREFIX=/usr
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
install: build
	install -D -m 755 $(BIN) $(DESTDIR)$(BINDIR)/midge
	install -d -m 755 $(DESTDIR)$(SYSCONFDIR)/midge/conf.d
	test -e $(DESTDIR)$(SYSCONFDIR)/midge/midge.conf || install -m 644 dist/midge.conf $(DESTDIR)$(SYSCONFDIR)/midge/midge.conf
	install -D -m 644 dist/midge.logrotate $(DESTDIR)$(SYSCONFDIR)/logrotate.d/midge
	install -d -m 755 $(DESTDIR)$(UNITDIR)
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' dist/midge.service.in > $(DESTDIR)$(UNITDIR)/midge.service
	chmod 644 $(DESTDIR)$(UNITDIR)/midge.service
	./$(BIN) man $(DESTDIR)$(MANDIR)/man1

# Removes what install put in place, except the configuration and the
# broker's data (as a package's remove, not purge, would).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/midge $(DESTDIR)$(UNITDIR)/midge.service $(DESTDIR)$(SYSCONFDIR)/logrotate.d/midge
	rm -f $(DESTDIR)$(MANDIR)/man1/midge.1 $(DESTDIR)$(MANDIR)/man1/midge-*.1

clean:
	rm -rf bin
