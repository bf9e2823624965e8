# Entry points for people and CI. `make demo` and `make test` work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# `make test` runs two pytest lanes side by side (this machine has 2 cores; most e2e time is waiting):
# lane 1, the e2e tests on the shared local cluster, one after another (they share its GPUs);
# lane 2, the unit and adapter tests and the test that stops the API server of its own private cluster.
# SERIAL=1 runs one pytest over everything instead.
LANE2 := tests e2e/reliability/test_control_plane_outage.py

.PHONY: venv system-deps cluster test demo crds lint clean chart lock audit lua-tools bench bench-scale
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

test: venv system-deps cluster lua-tools   ## the whole suite: import contracts, unit, adapter and e2e against the local control plane
	$(VENV)/bin/lint-imports
ifeq ($(SERIAL),1)
	$(PY) -m pytest $(PYTEST_ARGS)
else
	@mkdir -p out; echo "lane 2 ($(LANE2)) runs beside lane 1; its output follows lane 1's"; \
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS) $(LANE2) > out/test-lane2.log 2>&1 & lane2=$$!; \
	$(PY) -m pytest $(PYTEST_ARGS) e2e $(addprefix --deselect ,$(filter e2e/%,$(LANE2))); rc1=$$?; \
	wait $$lane2; rc2=$$?; echo "======== lane 2: $(LANE2) ========"; cat out/test-lane2.log; \
	echo "lane 1 (shared-cluster e2e) exit $$rc1; lane 2 exit $$rc2"; test $$rc1 -eq 0 -a $$rc2 -eq 0
endif

bench: venv          ## replay benchmark on ../shared/data (a year, 6 regions): numbers, timings, docs/benchmark.png
	$(PY) benchmarks/bench_replay.py --plot docs/benchmark.png

bench-scale: venv    ## 1,000 GreenModels / 20 namespaces / 100 GPU nodes on the local cluster, 30 min soak, restart: numbers (docs/scale.md)
	$(PY) benchmarks/bench_scale.py $(BENCH_SCALE_ARGS)

demo: venv            ## local simulated GPU cluster (built on first use, with a progress indicator) + operator + a sample GreenModel, live
	$(VENV)/bin/greenmodel demo

crds: venv            ## regenerate crds/ from the pydantic models (and the chart's copy)
	$(PY) -m greenmodel.api.crdgen --write
	cp crds/*.yaml charts/greenmodel-operator/crds/
	$(PY) -m greenmodel.api.refdoc --write

CHART := charts/greenmodel-operator
chart: venv           ## sync the Helm chart with the sources: CRDs from crds/, values schema from settings.py, default catalog
	cp crds/*.yaml $(CHART)/crds/
	cp examples/catalog.yaml $(CHART)/files/modelcatalog-default.yaml
	$(PY) $(CHART)/hack/gen_schema.py
	$(PY) $(CHART)/hack/gen_dashboard.py

lock: venv            ## re-pin dependencies with hashes (requirements.lock for the image, requirements-build.lock for its build)
	$(VENV)/bin/pip install -q uv
	$(VENV)/bin/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 -o requirements.lock
	printf 'setuptools>=77\nwheel>=0.43\n' | $(VENV)/bin/uv pip compile - --generate-hashes --python-version 3.11 --no-header -q -o requirements-build.lock
	sed -i '1i # Build backend of pyproject.toml, pinned with hashes for the image build (Dockerfile). Regenerate: make lock' requirements-build.lock

audit: venv           ## known vulnerabilities in the pinned dependencies (pip-audit + PyPI advisory data); AUDIT_ARGS=--strict to fail on unaudited pins
	$(VENV)/bin/pip install -q 'pip-audit>=2.7,<3'
	$(PY) .ci/audit.py requirements.lock $(AUDIT_ARGS)
	$(PY) .ci/audit.py requirements-build.lock $(AUDIT_ARGS)

GM_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/greenmodel
GLUA := $(GM_CACHE)/glua-v1.1.1/bin/glua
lua-tools:            ## gopher-lua, the Lua VM Argo CD embeds, for the health-check tests (Go module proxy, ~25 s once)
	@test -x $(GLUA) || GOBIN=$(dir $(GLUA)) GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
	  GOMODCACHE=$(GM_CACHE)/go/mod GOCACHE=$(GM_CACHE)/go/build go install github.com/yuin/gopher-lua/cmd/glua@v1.1.1

clean:
	e2e/cluster.sh down || true
	rm -rf $(VENV)
