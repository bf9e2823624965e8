# Entry points for people and CI. `make demo` and `make test` work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv system-deps cluster test demo crds lint clean
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

system-deps:          ## Debian packages the tests use (Prometheus server, Lua)
	e2e/system-deps.sh

cluster:              ## build (or reuse from cache) the local control plane binaries
	e2e/cluster.sh build

test: venv system-deps cluster   ## the whole suite: unit, adapter and e2e against the local control plane
	$(PY) -m pytest $(PYTEST_ARGS)

demo: venv cluster    ## local simulated GPU cluster + operator + a sample GreenModel, live in the terminal
	$(VENV)/bin/greenmodel demo

crds: venv            ## regenerate crds/ from the pydantic models
	$(PY) -m greenmodel.api.crdgen --write

clean:
	e2e/cluster.sh down || true
	rm -rf $(VENV)
