# clawrun — see README.md. `make test` is the whole suite and works on a fresh
# Debian 12 machine as root (it installs what is missing and creates an
# unprivileged test user); as a normal user it checks instead of installing.
GO        ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
TAGS      := seccomp
TEST_USER ?= clawrun-test
BIN       := bin
# The version clawrun reports: the commit (and -dirty) of this checkout.
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
export CGO_ENABLED := 1

.PHONY: all build deps test test-unit test-integration test-provision test-cgroupv2 demo bench lint clean

all: build

# deps installs build and test dependencies (root) or checks them (user).
deps:
	@sh scripts/setup-host.sh

build: deps
	@mkdir -p $(BIN)
	$(GO) build -tags $(TAGS) -trimpath -ldflags='-s -w -X main.version=$(VERSION)' -o $(BIN)/clawrun ./cmd/clawrun
	CGO_ENABLED=0 $(GO) build -o $(BIN)/echo-agent ./examples/echo-agent

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags $(TAGS) ./...

test: deps lint build test-provision test-unit test-integration

test-unit:
	$(GO) test -tags $(TAGS) -count=1 $$($(GO) list ./... | grep -v '/test$$')

# The container suite runs twice: as root, and rootless as an unprivileged
# user (the product's main case). The test binary and clawrun are copied to a
# directory that user can read.
test-integration: build
	@sh scripts/integration.sh "$(GO)" "$(TEST_USER)"

# The Vagrant box's provisioning script, run twice on this machine.
test-provision:
	@sh scripts/test-provision.sh "$(TEST_USER)"

# Limits on cgroup v2, root and rootless with delegation, in a qemu VM (this
# machine's cgroup v1 hierarchy is left alone). Not part of `test`.
test-cgroupv2: build
	@sh scripts/test-cgroupv2.sh

demo: build
	@sh scripts/demo.sh "$(TEST_USER)"

bench: build
	@sh scripts/bench.sh

clean:
	rm -rf $(BIN) .bench .cgroupv2
