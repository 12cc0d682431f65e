# feedtrends: two commands do all the set-up on a fresh machine:
#   make demo    local Kafka + Flink, sample feeds in, trends out
#   make test    unit, integration (MiniCluster) and e2e (real broker + cluster) tests
#
# Needs: python3.11, Java 17, Maven.  Everything else comes from PyPI and Maven Central.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.installed
JARS_STAMP := .cache/jars/.resolved
PYTEST := $(BIN)/python -m pytest

.PHONY: help install jars profiler schemas browser up down status demo test test-unit test-integration test-e2e test-faults bench bench-soak quality clean

help:
	@echo "make demo | test | up | down | status | test-unit | test-integration | test-e2e | schemas | clean"

# The virtual environment, with the project installed in editable mode (the
# Flink workers import jobs/, udfs/, connectors/ from it).
$(VENV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

# Connector jars and the Kafka broker, resolved by Maven into the git-ignored cache.
$(JARS_STAMP): pom.xml
	mvn --batch-mode --quiet -P flink-jars dependency:copy-dependencies
	mvn --batch-mode --quiet -P kafka-broker dependency:copy-dependencies
	touch $@

# The job's own JVM operators (connectors/jvm), compiled against PyFlink's lib/ into
# the jar dir the stack adds to the cluster's lib/.
JVM_JAR := .cache/jars/flink/feedtrends-jvm.jar
$(JVM_JAR): $(VENV_STAMP) connectors/jvm/build.sh $(shell find connectors/jvm -name '*.java')
	connectors/jvm/build.sh "$$($(BIN)/python -c 'import os, pyflink; print(os.path.dirname(pyflink.__file__))')/lib" $@

install: $(VENV_STAMP) $(JARS_STAMP) $(JVM_JAR)
jars: $(JARS_STAMP)

# Headless Chromium and its matching driver for the dashboard's browser test
# (tests/integration/test_dashboard_browser.py), from Debian's packages: selenium
# drives /usr/bin/chromedriver and never downloads a browser of its own.
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM) $(CHROMEDRIVER):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver
browser: $(CHROMIUM) $(CHROMEDRIVER)

# The schemas that k8s/feedtrends.yaml and docker-compose.yml are validated against
# (tests/unit/test_k8s_manifest.py, test_docker_compose.py).  They are kept in the
# repository, so the tests need no network; this target only refreshes them.  The
# version is in each file name; see schemas/deploy/README.md.
#   FlinkDeployment CRD: generated into the operator's api jar (Maven Central).
#   Compose Specification: the schema compose-go validates with (Go module proxy).
FLINK_OPERATOR_VERSION ?= 1.10.0
COMPOSE_GO_VERSION ?= v2.16.2
SCHEMAS_DIR := schemas/deploy
CRD_FILE := flinkdeployments.flink.apache.org-v1.yml
schemas:
	mvn --batch-mode --quiet dependency:copy \
		-Dartifact=org.apache.flink:flink-kubernetes-operator-api:$(FLINK_OPERATOR_VERSION) \
		-DoutputDirectory=.cache/schemas
	cd .cache/schemas && jar xf flink-kubernetes-operator-api-$(FLINK_OPERATOR_VERSION).jar META-INF/fabric8/$(CRD_FILE)
	rm -f $(SCHEMAS_DIR)/flinkdeployments.flink.apache.org-v1.operator-*.yml
	cp .cache/schemas/META-INF/fabric8/$(CRD_FILE) \
		$(SCHEMAS_DIR)/$(CRD_FILE:.yml=.operator-$(FLINK_OPERATOR_VERSION).yml)
	go mod download github.com/compose-spec/compose-go/v2@$(COMPOSE_GO_VERSION)
	rm -f $(SCHEMAS_DIR)/compose-spec.compose-go-*.json
	cp "$$(go env GOMODCACHE)/github.com/compose-spec/compose-go/v2@$(COMPOSE_GO_VERSION)/schema/compose-spec.json" \
		$(SCHEMAS_DIR)/compose-spec.compose-go-$(COMPOSE_GO_VERSION).json
	chmod 644 $(SCHEMAS_DIR)/*

up: install
	$(BIN)/feedtrends up

down:
	@if [ -x $(BIN)/feedtrends ]; then $(BIN)/feedtrends down; else echo "nothing to stop (no $(VENV))"; fi

status: install
	$(BIN)/feedtrends status

demo: install
	$(BIN)/feedtrends demo

# Everything but the long fault-injection scenarios; the reduced set marked `ci` runs.
test: install browser
	$(PYTEST) tests -m "not faults or ci"

test-unit: install
	$(PYTEST) tests/unit

test-integration: install browser
	$(PYTEST) tests/integration

test-e2e: install
	$(PYTEST) tests/e2e

test-faults: install
	$(PYTEST) tests/faults

# Benchmark: a private stack on free ports, N events preloaded, four systems
# measured, then live latency and state of feedtrends.  See BENCHMARKS.md.  The
# default N is 1,000,000, the size the figures in BENCHMARKS.md are quoted at; the
# python-loop and quix-streams peers make that run long on 2 cores: use e.g.
# `make bench N=100000` for a quick look.
N ?= 1000000
BENCH_ARGS ?=
bench: install
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[bench]"
	$(BIN)/python -m bench --events $(N) $(BENCH_ARGS)

# Soak: a rebuild of SOAK_EVENTS preloaded events under a short dedup TTL, long enough
# to pass the TTL many times; checkpoint size and both TaskManagers' RSS are sampled
# every 30 s (printed, and in bench/results/).  10M events take over an hour here.
SOAK_EVENTS ?= 10000000
SOAK_TTL_MS ?= 60000
bench-soak: install
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[bench]"
	$(BIN)/python -m bench --events $(SOAK_EVENTS) --systems feedtrends --soak --dedup-ttl $(SOAK_TTL_MS) \
		--live-seconds 0 --no-profile

# async-profiler for `python -m bench --jvm-profile` (bench/jvm_profile.py), from Maven Central.
PROFILER_STAMP := .cache/jars/profiler/.resolved
$(PROFILER_STAMP): pom.xml
	mvn --batch-mode --quiet -P profiler dependency:copy-dependencies
	touch $@
profiler: $(PROFILER_STAMP)

clean: down
	rm -rf $(VENV) .cache .state .pytest_cache .hypothesis

# Trend quality on real news: replays ../shared/realnews-dev (not in the repo) through a
# private stack and the trends job, prints per-day top 10s and the figures of
# udfs/quality.py; JSON to bench/results/.  Not part of `make test`.
QUALITY_ARGS ?=
quality: install
	$(BIN)/python -m bench.quality $(QUALITY_ARGS)
