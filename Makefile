# notification-worker — `make help` lists the targets.
CARGO ?= cargo
BIN := target/release/notification-worker
IMAGE ?= notification-worker:dev
# The repository, so that recipes find its scripts from anywhere (`make -f`, the tests).
ROOT := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))

.DEFAULT_GOAL := help
.PHONY: help build run dev test fmt lint setup deps clean docker-build docker-run bench fuzz

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

build: ## Build the release binary (target/release/notification-worker)
	$(CARGO) build --release

run: build ## Run the worker (NATS on 127.0.0.1:4222, started in ./data/nats if none runs; SQLite in ./data)
	$(ROOT)scripts/run-local.sh $(BIN) run

dev: ## Run a debug build with debug logs (NATS as for make run)
	LOG_LEVEL=info,notification_worker=debug $(ROOT)scripts/run-local.sh $(CARGO) run -- run

setup: build ## Create the stream, consumer and store schema/table (idempotent)
	$(BIN) setup

deps: ## Install what the tests start: nats-server, prometheus (and promtool), the pinned dynalite
	scripts/test-deps.sh

test: deps ## Run the whole test suite (starts its own nats-server and dynalite)
	$(CARGO) test

bench: deps ## Measure speed and cost against this machine's ceilings (about 10 minutes; BENCH_SCALE=0.1 for a quick look)
	$(CARGO) bench --bench bench

fuzz: ## Fuzz the event parser for 10 minutes (needs: cargo install cargo-fuzz)
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run parse_event -- -max_total_time=600 -max_len=70000 -timeout=10 -dict=fuzz/parse_event.dict

fmt: ## Format the code
	$(CARGO) fmt --all

lint: ## Check formatting and lints, as CI does
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean: ## Remove build output and the local database
	$(CARGO) clean
	rm -rf data

docker-build: ## Build the container image (needs a Docker engine)
	docker build -t $(IMAGE) .

docker-run: ## Run the image against NATS on the host, SQLite inside the container
	docker run --rm --network host -e NOTIF_STORE=sqlite -e NATS_URL=nats://127.0.0.1:4222 $(IMAGE)
