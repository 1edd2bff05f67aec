# The two front-door commands (see README):
#   make run    set up this machine and run supd in the foreground on units/
#   make test   set up this machine and run every test tier
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := busybox-static tini crun runc podman conmon umoci skopeo stress-ng \
                systemd systemd-container dbus util-linux iproute2 curl dpkg-dev python3-venv

.PHONY: setup run test test-unit bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

.apt-installed:
	@missing=""; for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi
	touch $@

# Byte-compile up front: with PYTHONDONTWRITEBYTECODE set (as on these
# machines) every supctl call would otherwise recompile its modules (~20 ms).
setup: .apt-installed $(VENV)/.installed
	@$(PY) -m compileall -q supervisor

# A cgroup root of its own (cgroupfs driver), so `make run` works beside a
# packaged supd: one supd owns a cgroup root, and the packaged one owns its own.
RUN_CGROUP ?= --cgroup-driver cgroupfs --cgroup-root /supd-dev

run: setup
	$(PY) examples/prepare.py
	exec $(VENV)/bin/supd --units units --state-dir .run/state --runtime-dir .run/runtime $(RUN_CGROUP)

test: setup
	$(VENV)/bin/pytest

test-unit: $(VENV)/.installed
	$(VENV)/bin/pytest tests/unit

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .apt-installed .run
