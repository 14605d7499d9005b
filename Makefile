# Breakwater: the commands a user and CI type.
SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
export PATH := $(dir $(SWIFT)):$(PATH)
BIN := .build/debug/breakwater

.PHONY: all build release run test unit-test integration-test bench deb clean setup

all: build

setup:
	scripts/setup.sh

build: setup
	$(SWIFT) build

release: setup
	$(SWIFT) build -c release

# Scans the shipped sample messages with the shipped signatures. They are all meant to be caught, so
# exit status 1 ("found") is success here; 2 (an error) still fails.
run: build
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

bench:
	scripts/setup.sh --bench
	$(SWIFT) build -c release
	bench/run.sh

deb:
	scripts/setup.sh --deb
	dpkg-buildpackage -us -uc -b

clean:
	rm -rf .build
