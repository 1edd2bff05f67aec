# The two front-door commands (see README):
#   make run    set up this machine and run supd in the foreground on units/
#   make test   set up this machine and run every test tier: on this host
#               (test-host), then again in a pure cgroup v2 VM (test-v2)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := busybox-static tini crun runc podman conmon umoci skopeo stress-ng \
                systemd systemd-container dbus util-linux iproute2 curl dpkg-dev python3-venv \
                libseccomp2 gcc libc6-dev containernetworking-plugins iptables \
                qemu-system-x86 qemu-utils mmdebstrap e2fsprogs openssh-client \
                docker-registry apache2-utils pandoc man-db zsh fish lintian
# (libseccomp2: the daemon compiles seccomp filters with it; gcc, libc6-dev:
# tests build static C probes; containernetworking-plugins, iptables: the CNI
# plugins supd runs for container networks. The fourth line: the host side of the pure
# cgroup v2 VM tier, tests/vm/README.md. pandoc, man-db, zsh, fish: `make man`
# and the man page and completion tests; the .deb ships the checked-in files,
# so its build needs none of them)

.PHONY: setup run test test-host test-v2 test-unit bench bench-v2 soak man completion clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# re-checked whenever this file (and so APT_PACKAGES) changes
.apt-installed: Makefile
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

# Both tiers run even when the first fails; the status is the first failure's.
test: setup
	@host=0; v2=0; \
	$(MAKE) --no-print-directory test-host || host=$$?; \
	$(MAKE) --no-print-directory test-v2 || v2=$$?; \
	echo "make test: host tiers exited $$host, pure cgroup v2 VM tier exited $$v2"; \
	[ $$host -ne 0 ] && exit $$host; exit $$v2

# every tier on this host (hybrid or v1 here; no systemd as PID 1)
test-host: setup
	$(VENV)/bin/pytest

# the root tiers again in a Debian 12 VM booted with systemd and pure cgroup v2
# (builds the image first when its recipe changed; the tests get a 40 min
# budget, tests/vm/tier.py, so that all of `make test` fits CI's hour)
test-v2: setup
	$(PY) tests/vm/purev2.py test

test-unit: $(VENV)/.installed
	$(VENV)/bin/pytest tests/unit

bench: setup
	$(PY) bench/run.py

# issue 10's soak: 500 random operations over at least 10 minutes against a
# real supd, invariants checked after every step (bench/README.md, "soak.py");
# SOAK_ARGS="--seed N" replays a run, SOAK_ARGS="--ops 40 --min-seconds 0" is the smoke
SOAK_ARGS ?=
soak: setup
	$(PY) bench/soak.py --ops 500 --min-seconds 600 $(SOAK_ARGS)

# container start, freeze/thaw and scope create/remove on pure cgroup v2 beside
# crun, in the test VM (ratios: TCG makes absolute times meaningless); the
# tables land in bench/results/purev2.md
bench-v2: setup
	@mkdir -p bench/results
	$(PY) tests/vm/purev2.py run -- python bench/purev2.py >bench/results/purev2.md; \
	status=$$?; cat bench/results/purev2.md; exit $$status

# Regenerate the checked-in man pages (packaging/man, from docs/*.md with
# pandoc) and shell completions (packaging/completion, from supctl's parser
# with shtab); tests/docs fails while either is out of date.
man: .apt-installed
	$(PYTHON) packaging/manpages.py

completion: $(VENV)/.installed
	$(PY) packaging/completion.py

clean:
	rm -rf $(VENV) .apt-installed .run
