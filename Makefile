# berth — the two commands: `make up` (build, start the embedded control plane, deploy the demo stack) and
# `make test` (every test). Both install what they need and are idempotent.

SHELL := /bin/bash
# rustup's toolchain (scripts/deps.sh installs it there when Rust is missing or too old).
export PATH := $(HOME)/.cargo/bin:$(PATH)
DATA_DIR ?= $(CURDIR)/.data
LISTEN ?= 127.0.0.1:6443
BERTH := target/release/berth
KUBECONFIG_FILE := $(DATA_DIR)/kubeconfig

.PHONY: up down test deps build images image-berth crds lint bench bench-apiserver bench-runtime bench-pods bench-demo bench-network bench-agent-memory bench-stacks

deps:
	@scripts/deps.sh

build: deps
	cargo build --release -p berth

# The demo images (PostgreSQL, Redis, the Flask app) from Debian packages, served on 127.0.0.1:5000; cached.
images:
	@scripts/images.sh

# The Stack controller's image (charts/berth, config/manager) from the release binary, pushed to the loopback
# registry as 127.0.0.1:5000/berth/berth:<version> and :latest; cached. charts/berth/README.md: pushing it elsewhere.
image-berth: deps
	@scripts/images.sh berth

up: build images
	@scripts/up.sh "$(BERTH)" "$(DATA_DIR)" "$(LISTEN)"

down:
	@scripts/down.sh "$(DATA_DIR)"

lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test: deps lint
	@scripts/test-deps.sh
	@scripts/test.sh

# Regenerate the committed CRD YAML from the Rust types.
crds:
	BERTH_UPDATE_CRDS=1 cargo test -p berth-api committed_crd_files_match_the_types

bench: bench-apiserver bench-runtime bench-pods bench-demo bench-network bench-agent-memory bench-stacks

bench-runtime: deps
	@scripts/test-deps.sh
	cargo build --release -p berth-agent --bin bench-runtime
	target/release/bench-runtime --iterations 30

bench-apiserver: deps
	cargo build --release -p berth -p berth-e2e --bins
	BERTH_BIN=$(CURDIR)/target/release/berth target/release/bench-apiserver

# Pods on berth up against podman kube play (root; installs podman with apt when missing). BENCHMARKS.md.
bench-pods: deps
	@scripts/test-deps.sh
	cargo build --release -p berth -p berth-e2e --bins
	BERTH_BIN=$(CURDIR)/target/release/berth target/release/bench-pods

# The demo stack on berth up against the same Pods with podman kube play, and make up from a warm cache.
bench-demo: deps
	@scripts/test-deps.sh
	cargo build --release -p berth -p berth-e2e --bins
	BERTH_BIN=$(CURDIR)/target/release/berth target/release/bench-demo

# Pod network setup against iproute2, DNS from a Pod against dnsmasq, hostPort proxy against the Pod IP.
bench-network: deps
	@scripts/test-deps.sh
	cargo build --release -p berth -p berth-e2e --bins
	BERTH_BIN=$(CURDIR)/target/release/berth target/release/bench-network

# The node agent alone (berth up --disable-agent plus berth agent): its memory idle and with 100 Pods, shims apart.
bench-agent-memory: deps
	@scripts/test-deps.sh
	cargo build --release -p berth -p berth-e2e --bins
	BERTH_BIN=$(CURDIR)/target/release/berth target/release/bench-agent-memory --pods 100

# Stacks through the controller against their bare objects: apply → Ready one at a time and 200 at once,
# reconciles when nothing changes, the controller's memory (about 15 minutes; the 600 Pods load the machine).
bench-stacks: deps
	@scripts/test-deps.sh
	cargo build --release -p berth -p berth-e2e --bins
	BERTH_BIN=$(CURDIR)/target/release/berth target/release/bench-stacks
