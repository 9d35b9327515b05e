# The two commands: `make run` (set up, then run on a local broker) and `make test`.
VENV := .venv
BIN := $(VENV)/bin

# The dashboard test drives a Chromium: Debian's /usr/bin/chromium when installed, else
# Playwright's own. This starts Playwright's own headless Chromium once, to see that it is there.
PLAYWRIGHT_CHROMIUM_STARTS := $(BIN)/python -c 'from playwright.sync_api import sync_playwright; \
  p = sync_playwright().start(); p.chromium.launch().close(); p.stop()' >/dev/null 2>&1
# Where the machine can reach Playwright's CDN, download it (headless shell only, ~100 MB) on first
# use; fail fast when the CDN is unreachable (15 s per connection, 10 min in all).
PLAYWRIGHT_INSTALL_CHROMIUM := PLAYWRIGHT_DOWNLOAD_CONNECTION_TIMEOUT=15000 \
  timeout 600 $(BIN)/playwright install --only-shell chromium >/dev/null 2>&1

# Apache Kafka's jars (kafka/pom.xml), fetched once by Maven: the tests' brokers, and `make run BROKER=kafka`.
KAFKA_LIB := kafka/lib/.fetched
# The broker `make run` starts: tansu (memory only, the quick default) or kafka (Apache Kafka, KRaft).
BROKER ?= tansu

.PHONY: run test train lint
run: $(VENV)/.installed $(if $(filter kafka,$(BROKER)),$(KAFKA_LIB))
	IRIS_LOCAL_BROKER=$(BROKER) $(BIN)/iris-app-local

test: $(VENV)/.installed-test $(KAFKA_LIB)
	@[ -x /usr/bin/chromium ] || $(PLAYWRIGHT_CHROMIUM_STARTS) \
	  || { $(PLAYWRIGHT_INSTALL_CHROMIUM) && $(PLAYWRIGHT_CHROMIUM_STARTS); } || { \
	  echo "The dashboard test needs a Chromium: apt-get install chromium, or $(BIN)/playwright install chromium"; exit 1; }
	$(BIN)/ruff check iris_app tests bench
	$(BIN)/hadolint Dockerfile
	$(BIN)/pytest -n 4 --dist loadscope --no-loadscope-reorder --durations=8

train: $(VENV)/.installed-test
	$(BIN)/faust -A iris_app train

$(KAFKA_LIB): kafka/pom.xml
	@command -v mvn >/dev/null || { \
	  echo "The tests run Apache Kafka, whose jars Maven fetches: install Maven (e.g. apt-get install maven)."; exit 1; }
	mvn -q -B -f kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/kafka/lib
	touch $@

$(VENV)/.installed: setup.cfg pyproject.toml
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "iris_app needs Python 3.11 or later: python3 is $$(python3 -c 'import platform; print(platform.python_version())' 2>/dev/null || echo not installed)."; exit 1; }
	@java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])' || { \
	  echo "iris_app needs Java 17 (a JRE is enough, e.g. Debian's openjdk-17-jre-headless): 'java -version' found none."; exit 1; }
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local]'
	touch $@

# The test tools (pytest, h2o for training, Playwright, linters) on top of what running needs.
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@
