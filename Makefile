# The two commands a newcomer needs: `make demo` (the whole flow, no cluster) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The policy checker (checkov) lives in a virtualenv of its own: it pins packaging<24 and, through
# boto3, python-dateutil<3, which conflict with requirements.lock.
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
# kubectl of the same release as the control plane comes first on the tests' PATH.
CONTROL_PLANE := build/control-plane/v1.37.2

.PHONY: demo test lint bench clean tools control-plane promtool operator-lock

demo: $(STAMP)
	$(BIN)/autoscene sandbox

test: $(STAMP) $(TOOLS_STAMP) control-plane promtool
	PATH="$(CURDIR)/$(CONTROL_PLANE):$$PATH" $(BIN)/python -m pytest

# The real Kubernetes control plane for the end-to-end tests, built from source once (a few minutes)
# and reused; without Go those tests are skipped and say why.
control-plane:
	@if command -v go >/dev/null 2>&1; then \
		bash hack/build-control-plane.sh >/dev/null; \
	else \
		echo "go not found: tests on the real control plane will be skipped (see hack/build-control-plane.sh)"; \
	fi

# promtool (Debian's `prometheus` package) checks and unit-tests the monitoring kit's alert rules;
# without it those tests are skipped and say why. CI installs it and fails them instead.
promtool:
	@command -v promtool >/dev/null 2>&1 || \
		echo "promtool not found: the alert rule tests will be skipped (apt-get install prometheus)"

# The operator image's lock: pyproject.toml's runtime dependencies at requirements.lock's versions, with
# the hashes of every published file (images/operator/Dockerfile installs it with --require-hashes).
PIP_TOOLS := build/pip-tools
operator-lock:
	$(PYTHON) -m venv $(PIP_TOOLS)
	$(PIP_TOOLS)/bin/python -m pip install --quiet pip-tools==7.6.2
	$(PIP_TOOLS)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --constraint requirements.lock \
		--output-file images/operator/requirements.lock pyproject.toml

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench images/frame-extractor
	$(BIN)/mypy operator/autoscene images/frame-extractor/extract_frames.py images/frame-extractor/framex
	$(BIN)/ruff check images/contact-sheet && $(BIN)/mypy images/contact-sheet/contact_sheet.py images/contact-sheet/contactsheet

bench: $(STAMP)
	$(BIN)/python bench/frames.py

# A fresh machine gets exactly the pinned versions the project was tested with.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): requirements-tools.lock
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet -r requirements-tools.lock
	touch $(TOOLS_STAMP)

clean:
	rm -rf $(VENV) $(TOOLS) .autoscene .pytest_cache .mypy_cache .ruff_cache
