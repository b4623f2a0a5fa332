# The two commands a new user needs (see README.md):
#   make run    set up and run the main job
#   make test   set up everything the tests need and run the whole suite
# Both are idempotent and work on a fresh Debian machine with Python >= 3.11.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

# Real servers and tools the tests start themselves (installed when run as root); chromium draws the
# HTML pages (report, city) for the tests that look at them.
DEB_PACKAGES ?= gcc systemd influxdb influxdb-client victoria-metrics snmpd snmp prometheus-snmp-exporter chromium slurm-wlm munge
# Also node and npm (>= 18), for the JavaScript signature verifier the signing tests run; checked by
# command rather than package, as NodeSource's nodejs carries its own npm.

.PHONY: run test test-fast test-kernels-nojit conformance bench deps venv clean

venv: $(VENV)/.installed

# pyproject.toml maps puewatch's subpackages to folders beside puewatch/ (agent/, collector/, kernels/,
# benchmarks/, config/profiles), which a plain .pth path entry cannot express, so setuptools installs
# the package editable through its meta path finder and says so in an "Editable installation" box:
# "folders in your working directory with the same name as your package may take precedence". Here
# that folder (puewatch/) is the package's own source, so the note warns of nothing; it is filtered by
# its text only (any other warning still shows). Moving those folders under puewatch/ would remove it.
EDITABLE_NOTE_OFF := PYTHONWARNINGS="ignore:Editable installation:UserWarning"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(EDITABLE_NOTE_OFF) $(PIP) install --quiet -e ".[test]"
	touch $@

deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		command -v node >/dev/null && command -v npm >/dev/null || missing="$$missing nodejs npm"; \
		if [ -n "$$missing" ]; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		fi; \
	else \
		echo "not root: make sure these Debian packages are installed: $(DEB_PACKAGES) nodejs npm"; \
	fi

# The main job: a whole simulated site (GPU nodes, SNMP meters, collector) for a minute, live.
DEMO_ARGS ?= --duration 60
run: venv
	$(VENV)/bin/puewatch demo $(DEMO_ARGS)

bench: venv
	$(VENV)/bin/puewatch bench kernels

# The suite in two processes (pytest-xdist), a test file each at a time: most tests wait on real
# servers (influxd, snmpd, Slurm, chromium) more than they compute, so two share 2 cores well (on
# an AMD EPYC VM, 2 vCPUs: 20:38 in one process, 12:46 in two). A file's tests stay in one process,
# in order, with their module fixtures. TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= 2
test: deps venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile
	$(MAKE) --no-print-directory test-kernels-nojit

# The kernel tests once more with the JIT off, so coverage sees the kernel bodies.
test-kernels-nojit: venv
	NUMBA_DISABLE_JIT=1 HYPOTHESIS_PROFILE=nojit $(PY) -m coverage run --rcfile=.coveragerc-kernels -m pytest -q -p no:cacheprovider tests/kernels
	$(PY) -m coverage report --rcfile=.coveragerc-kernels

# Conformance against data nobody on the project wrote, read in place from ../shared beside the
# checkout (never copied in): for maintainers and CI (.ci/run), where a missing folder fails.
conformance: deps venv
	$(PY) -m pytest -q tests/conformance

test-fast: venv
	$(PY) -m pytest -q -x

clean:
	rm -rf $(VENV) build dist *.egg-info .coverage .pytest_cache .hypothesis
