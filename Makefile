# The two front-door commands (see README):
#   make run    set up this machine and run supd in the foreground on units/
#   make test   set up this machine and run every test tier: on this host
#               (test-host), then again in a pure cgroup v2 VM (test-v2)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian packages, by the command that needs them (each list is installed
# with --no-upgrade: what is there already is never upgraded).
# `make run`: what supd needs at run time, and the README's tour (curl).
# libseccomp2: supd compiles seccomp filters with it; tini: `init = true`;
# containernetworking-plugins, iptables: the CNI plugins of container
# networks; skopeo (with ca-certificates, which it only recommends):
# image pulls; busybox-static: the examples' rootfs.
RUN_PACKAGES := python3-venv libseccomp2 busybox-static tini \
                containernetworking-plugins iptables skopeo ca-certificates curl
# `make test`, on top of RUN_PACKAGES: the peers the tests compare with,
# systemd for the sandbox tier, gcc and libc6-dev for the static C probes,
# a registry for the pull tests, pandoc, man-db, zsh and fish for the man
# page and completion tests, lintian for the .deb's check, and the host side of the pure cgroup v2 VM tier
# (tests/vm/README.md: qemu, mmdebstrap...).
TEST_PACKAGES := crun runc podman conmon umoci stress-ng \
                 systemd systemd-container dbus util-linux iproute2 \
                 gcc libc6-dev dpkg-dev \
                 docker-registry apache2-utils \
                 pandoc man-db zsh fish lintian \
                 qemu-system-x86 qemu-utils mmdebstrap e2fsprogs openssh-client
# `make bench`, on top of RUN_PACKAGES: the peers it measures supd against.
BENCH_PACKAGES := crun runc podman conmon umoci stress-ng
# Where apt-get's and pip's chatter goes (shown only when they fail).
SETUP_LOG := .run/setup.log
# a bare `supctl` in a new terminal (`make run`): a link to this checkout's launcher
SUPCTL_LINK ?= /usr/local/bin/supctl

.PHONY: setup setup-test setup-bench run test test-host test-v2 test-unit bench bench-v2 soak man completion clean

# Quiet: the output goes to $(SETUP_LOG), shown if a step fails.
define quietly
	@mkdir -p $(dir $(SETUP_LOG)); echo "== $(1)" >>$(SETUP_LOG); \
	$(1) >>$(SETUP_LOG) 2>&1 || { tail -n 40 $(SETUP_LOG); echo "failed: $(1) (log: $(SETUP_LOG))"; exit 1; }
endef

# The venv runs supd from this checkout (an editable install). Its
# bin/supctl is then replaced by a launcher that skips site and so the
# editable install's import hook (examples/install_supctl.py, bench/README).
$(VENV)/.installed: pyproject.toml examples/install_supctl.py
	$(call quietly,$(PYTHON) -m venv $(VENV))
	@echo "installing supd into $(VENV)"
	$(call quietly,$(PY) -m pip install -q -e .)
	@$(PY) examples/install_supctl.py $(VENV)
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(call quietly,$(PY) -m pip install -q -e '.[test]')
	@$(PY) examples/install_supctl.py $(VENV)
	@touch $@

# Installs what is missing of a list, and nothing else. Re-checked whenever
# this file (and so a list) changes.
define apt_install
	@missing=""; for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing (log: $(SETUP_LOG))"; mkdir -p $(dir $(SETUP_LOG)); \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --no-upgrade $$missing; } >>$(SETUP_LOG) 2>&1 \
	  || { tail -n 40 $(SETUP_LOG); echo "apt-get failed (log: $(SETUP_LOG))"; exit 1; }; fi
endef

.apt-run: Makefile
	$(call apt_install,$(RUN_PACKAGES))
	@touch $@

.apt-test: Makefile .apt-run
	$(call apt_install,$(TEST_PACKAGES))
	@touch $@

.apt-bench: Makefile .apt-run
	$(call apt_install,$(BENCH_PACKAGES))
	@touch $@

# Byte-compile up front: with PYTHONDONTWRITEBYTECODE set (as on these
# machines) every supctl call would otherwise recompile its modules (~20 ms).
setup: .apt-run $(VENV)/.installed
	@$(PY) -m compileall -q supervisor

setup-test: .apt-test $(VENV)/.installed-test setup

setup-bench: .apt-bench $(VENV)/.installed-test setup

# A cgroup root of its own (cgroupfs driver), so `make run` works beside a
# packaged supd: one supd owns a cgroup root, and the packaged one owns its own.
RUN_CGROUP ?= --cgroup-driver cgroupfs --cgroup-root /supd-dev

# examples/run.py prepares the examples, prints the banner once supd is
# ready and execs supd (in the foreground: Ctrl-C stops it).
run: setup
	@$(PY) examples/install_supctl.py $(VENV) --link $(SUPCTL_LINK)
	@exec $(PY) examples/run.py $(VENV)/bin/supd --units units --state-dir .run/state --runtime-dir .run/runtime $(RUN_CGROUP)

# Both tiers run even when the first fails; the status is the first failure's.
test: setup-test
	@host=0; v2=0; \
	$(MAKE) --no-print-directory test-host || host=$$?; \
	$(MAKE) --no-print-directory test-v2 || v2=$$?; \
	echo "make test: host tiers exited $$host, pure cgroup v2 VM tier exited $$v2"; \
	[ $$host -ne 0 ] && exit $$host; exit $$v2

# every tier on this host (hybrid or v1 here; no systemd as PID 1)
test-host: setup-test
	$(VENV)/bin/pytest

# the root tiers again in a Debian 12 VM booted with systemd and pure cgroup v2
# (builds the image first when its recipe changed; the tests get a 40 min
# budget, tests/vm/tier.py, so that all of `make test` fits CI's hour)
test-v2: setup-test
	$(PY) tests/vm/purev2.py test

test-unit: $(VENV)/.installed-test
	$(VENV)/bin/pytest tests/unit

bench: setup-bench
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
bench-v2: setup-test
	@mkdir -p bench/results
	$(PY) tests/vm/purev2.py run -- python bench/purev2.py >bench/results/purev2.md; \
	status=$$?; cat bench/results/purev2.md; exit $$status

# Regenerate the checked-in man pages (packaging/man, from docs/*.md with
# pandoc) and shell completions (packaging/completion, from supctl's parser
# with shtab); tests/docs fails while either is out of date.
man: .apt-test
	$(PYTHON) packaging/manpages.py

completion: $(VENV)/.installed-test
	$(PY) packaging/completion.py

clean:
	rm -rf $(VENV) .apt-run .apt-test .apt-bench .run
	@if [ "$$(readlink $(SUPCTL_LINK))" = "$(abspath $(VENV))/bin/supctl" ]; then rm -f $(SUPCTL_LINK); fi
