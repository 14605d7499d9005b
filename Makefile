# Breakwater: the commands a user and CI type.
SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
export PATH := $(dir $(SWIFT)):$(PATH)
BIN := .build/debug/breakwater

.PHONY: all build release run scan-samples test unit-test integration-test tsan-test asan-test fuzz bench deb deb-test clean setup \
	format format-check incident

all: build

setup:
	scripts/setup.sh

build: setup
	$(SWIFT) build

release: setup
	$(SWIFT) build -c release

# Starts the milter in the foreground, as systemd would, with the shipped signatures: MTA socket
# inet:8897@127.0.0.1, metrics on 127.0.0.1:9897, the control socket in .build/run/ (so that it needs
# neither root nor /run/breakwater). Ctrl-C (or SIGTERM) stops it. Any other key: ARGS="--workers 4".
RUN_DIR := $(CURDIR)/.build/run
run: build
	mkdir -p $(RUN_DIR)
	$(BIN) run --socket inet:8897@127.0.0.1 --control $(RUN_DIR)/control.sock $(ARGS)

# Scans the shipped sample messages with the shipped signatures. They are all meant to be caught, so
# exit status 1 ("found") is success here; 2 (an error) still fails.
scan-samples: build
	$(BIN) scan Signatures/samples || test $$? -eq 1

# Every test: unit and engine tests (swift test), then the integration tests with real Postfix and miltertest.
test:
	scripts/setup.sh --test
	$(SWIFT) build
	$(SWIFT) test
	scripts/integration-tests.sh

unit-test: build
	$(SWIFT) test

integration-test: build
	scripts/integration-tests.sh

# The reload, signature and wave tests against a ThreadSanitizer build (separate scratch path). The one
# report turned off is a thread leak inside libmilter (its signal thread is never joined), not ours.
tsan-test:
	scripts/setup.sh --test
	$(SWIFT) build --sanitize=thread --scratch-path .build-tsan
	TSAN_OPTIONS=report_thread_leaks=0 BREAKWATER_BIN=.build-tsan/debug/breakwater \
	  scripts/integration-tests.sh IntegrationTests/test_reload.py IntegrationTests/test_signatures_cli.py IntegrationTests/test_waves.py

# The integration tests against an AddressSanitizer build (separate scratch path). Reports go to files
# (ASAN_LOG_DIR), not to the daemon's stderr, which tests read, and any report fails the target.
# Leaks count: libmilter and libclamav are not instrumented, but their heap goes through ASan's
# malloc; scripts/lsan-suppressions.txt lists the leaks at exit that are not ours (libclamav's
# engine loads) or once per process (libmilter keeps the socket path), and why. Their stacks need the
# slow unwinder (libclamav has no frame pointers); 12 frames reach cl_load and keep the overload
# test's 150,000-part message within its timeout when the machine is otherwise idle. Not run: the
# overload test's RSS bound and the malloc-arena test, which measure glibc malloc, not ASan's, and
# the max-wait test, which needs its slow message to take seconds, not the minutes ASan makes of it
# on a loaded machine (it timed out in 2 of 3 runs on 2026-12-06), and the prefault test that expects
# "prefault: off (prefault-size is 0)": a sanitizer build has no prefault shim and says so instead.
ASAN_LOG_DIR := $(CURDIR)/.build-asan/reports
asan-test:
	scripts/setup.sh --test
	$(SWIFT) build --sanitize=address --scratch-path .build-asan
	rm -rf $(ASAN_LOG_DIR) && mkdir -p $(ASAN_LOG_DIR)
	SWIFT_BACKTRACE=enable=no \
	  ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:malloc_context_size=12:log_path=$(ASAN_LOG_DIR)/asan \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan-suppressions.txt:print_suppressions=0 \
	  BREAKWATER_BIN=.build-asan/debug/breakwater scripts/integration-tests.sh \
	  -k 'not test_300_sessions_of_1mb and not test_malloc_arenas_capped and not test_max_wait_keeps and not test_startup_log_says_off_with_the_reason' $(ARGS)
	@if [ -n "$$(ls -A $(ASAN_LOG_DIR))" ]; then cat $(ASAN_LOG_DIR)/*; echo "asan-test: sanitizer reports above" >&2; exit 1; fi

# Coverage-guided fuzzing (Fuzz/README.md): builds the libFuzzer targets with AddressSanitizer
# (.build-fuzz/) and runs each for FUZZ_SECONDS on its corpus; fails on any finding.
# FUZZ_TARGETS="wave config" runs some only.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh $(FUZZ_TARGETS)

# The binary measured is built as the package builds it (Swift runtime linked in; debian/rules), so the
# memory figures are those of the installed program, not of one that maps the Swift shared libraries.
bench:
	scripts/setup.sh --bench
	$(SWIFT) build -c release --static-swift-stdlib --product breakwater
	bench/run.sh

# The outage replay (docs/incident.md): a private Postfix delivering info@ to a handler process per
# message in a memory cgroup, a giveaway wave, four runs (clamav-milter + clamd, Breakwater tag-only,
# ops adding a signature, wave-action tempfail); about 13 minutes, needs root. Writes out/incident/,
# the figures docs/incident/run-*.png and the table in docs/incident.md. ARGS="--quick": a smoke test.
incident:
	scripts/setup.sh --test --bench
	$(SWIFT) build
	python3 bench/incident/replay.py --doc --bin $(BIN) $(ARGS)

# The Debian package, built as dpkg-buildpackage does from any tree (see debian/README.Debian);
# dpkg-buildpackage writes to the parent directory, so the results are moved to out/.
deb:
	scripts/setup.sh --deb
	SWIFT=$(SWIFT) dpkg-buildpackage -us -uc -b
	mkdir -p out
	v=$$(dpkg-parsechangelog -S Version); a=$$(dpkg --print-architecture); \
	for f in breakwater_$${v}_$$a.deb breakwater-dbgsym_$${v}_$$a.deb breakwater_$${v}_$$a.buildinfo breakwater_$${v}_$$a.changes; do \
	  if [ -e ../$$f ]; then mv -f ../$$f out/; fi; \
	done
	ls -l out/

# Builds the package, then lints, installs, runs (as the unit would, with a private Postfix), upgrades,
# removes and purges it on this machine: needs root. CI runs it after `make test`.
deb-test: deb
	scripts/setup.sh --deb --test
	BREAKWATER_DEB_TEST=1 python3 -m pytest -q -p no:cacheprovider IntegrationTests/test_deb.py

# swift-format with .swift-format: `make format` rewrites the Swift files in place; `make format-check`
# (CI) changes nothing and fails on any finding (swift format lint --strict).
format:
	SWIFT=$(SWIFT) scripts/format.sh

format-check:
	SWIFT=$(SWIFT) scripts/format.sh --check

clean:
	rm -rf .build
