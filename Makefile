# The two commands: `make run` (set up, then run on a local broker) and `make test`.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test train lint
run: $(VENV)/.installed
	$(BIN)/iris-app-local

test: $(VENV)/.installed
	@[ -x /usr/bin/chromium ] || { \
	  echo "The dashboard test drives Debian's Chromium: apt-get install chromium (.ci/run does)."; exit 1; }
	$(BIN)/ruff check iris_app tests bench
	$(BIN)/pytest

train: $(VENV)/.installed
	$(BIN)/faust -A iris_app train

$(VENV)/.installed: setup.cfg pyproject.toml
	@java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])' || { \
	  echo "iris_app needs Java 17 (a JRE is enough, e.g. Debian's openjdk-17-jre-headless): 'java -version' found none."; exit 1; }
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@
