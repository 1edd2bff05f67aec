#!/bin/sh
# Build dist/supd_<version>_<arch>.deb from this repository with dpkg-deb.
#
# The package carries its own Python environment, a venv at /opt/supd built
# here with pip (supd from this checkout, its dependencies from PyPI, which
# has the versions supd needs: Debian 12's python3-anyio and python3-structlog
# are too old). The venv runs on Debian's interpreter (/usr/bin/python3.X
# from the python3.X package), which the package depends on, so security
# fixes to Python arrive through apt. A venv is tied to its minor version,
# hence the dependency on python3.X exactly rather than on "python3".
#
# Architecture is "all" only if the venv has no compiled extension; watchfiles
# ships one (Rust), so in practice it is the build machine's (amd64 here).
#
# lintian (tests/packaging/test_deb.py) reports nothing on the result but the
# venv's place under /opt, overridden in packaging/lintian-overrides.
#
# Usage: packaging/build-deb.sh [--python /usr/bin/python3.11] [--out DIR]
# Env:   PIP_ARGS   extra pip arguments (an index, --constraint, --no-index ...)
# Writes the .deb and, beside it, supd_<version>_<arch>.constraints.txt: the
# exact dependency versions it bundled (PIP_ARGS="--constraint FILE" rebuilds
# with the same ones).
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=/usr/bin/python3
OUT="$REPO/dist"
while [ $# -gt 0 ]; do
    case "$1" in
        --python) PYTHON=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

PREFIX=/opt/supd
# the interpreter by its versioned name, so the venv keeps working when
# Debian's default python3 moves to a newer minor version
PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYTHON_VERSIONED=$(dirname "$(readlink -f "$PYTHON")")/python$PYVER
[ -x "$PYTHON_VERSIONED" ] || PYTHON_VERSIONED=$PYTHON
# version, maintainer and homepage have one source: pyproject.toml
{ read -r VERSION; read -r MAINTAINER; read -r HOMEPAGE; } <<EOF
$("$PYTHON" -c 'import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
author = p["authors"][0]
print(p["version"], "%s <%s>" % (author["name"], author["email"]), p["urls"]["Homepage"], sep="\n")' "$REPO/pyproject.toml")
EOF
# the Debian changelog's newest entry must be this version (dpkg and lintian read it)
CHANGELOG_VERSION=$(sed -n '1s/^supd (\([^)]*\)).*/\1/p' "$REPO/packaging/changelog")
if [ "$CHANGELOG_VERSION" != "$VERSION" ]; then
    echo "build-deb: packaging/changelog's newest entry is $CHANGELOG_VERSION, pyproject.toml says $VERSION" >&2
    exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/supd-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"
mkdir -p "$ROOT"

echo "build-deb: venv at $PREFIX from $PYTHON_VERSIONED" >&2
"$PYTHON_VERSIONED" -m venv "$ROOT$PREFIX"
# copy the source first: pip would otherwise build inside the checkout and
# leave build/ and *.egg-info behind in other people's working tree
SRC="$WORK/src"
mkdir -p "$SRC"
cp -a "$REPO/pyproject.toml" "$REPO/supervisor" "$SRC/"
[ -f "$REPO/README.md" ] && cp -a "$REPO/README.md" "$SRC/"
find "$SRC" -name __pycache__ -prune -exec rm -rf {} +
# shellcheck disable=SC2086
"$ROOT$PREFIX/bin/python" -m pip install --quiet --no-cache-dir --no-compile ${PIP_ARGS:-} "$SRC"
"$ROOT$PREFIX/bin/python" -m pip freeze --quiet --exclude supd >"$WORK/constraints.txt"
# pip is a build tool: the runtime venv does not need it (nor its scripts
# with build-time paths in their shebangs)
"$ROOT$PREFIX/bin/python" -m pip uninstall --quiet --yes pip setuptools >/dev/null 2>&1 || true
rm -f "$ROOT$PREFIX"/bin/pip* "$ROOT$PREFIX"/bin/Activate.ps1
# the dependencies' own commands (idna, watchfiles): supd does not use them,
# and /opt/supd/bin holds what /usr/bin/supd and /usr/bin/supctl run
for f in "$ROOT$PREFIX"/bin/*; do
    case "$(basename "$f")" in
        supd|supctl|python*|activate*) ;;
        *) rm -f "$f" ;;
    esac
done

# the venv was built under $ROOT; its scripts must name the installed path
for f in "$ROOT$PREFIX"/bin/*; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    if grep -qI "$ROOT" "$f" 2>/dev/null; then
        sed -i "s#$ROOT$PREFIX#$PREFIX#g" "$f"
    fi
done
# pyvenv.cfg may name the build path (Python >= 3.11 writes `command =`)
sed -i "s#$ROOT$PREFIX#$PREFIX#g" "$ROOT$PREFIX/pyvenv.cfg"
# interpreter symlinks must point at the system interpreter, not a build one
ln -sf "$PYTHON_VERSIONED" "$ROOT$PREFIX/bin/python"
if grep -rIl "$ROOT" "$ROOT$PREFIX" >/dev/null 2>&1; then
    echo "build-deb: build path left in:" >&2
    grep -rIl "$ROOT" "$ROOT$PREFIX" >&2
    exit 1
fi
# No byte-code in the package (lintian: package-installs-python-pycache-dir):
# postinst compiles the venv where it is installed, prerm removes the result.
find "$ROOT$PREFIX" -depth -type d -name __pycache__ -exec rm -rf {} +
# PyYAML's wheel carries a static copy of libyaml in its C extension (lintian:
# embedded-library; Debian's security fixes to libyaml would not reach it).
# supd reads and writes Kubernetes manifests with PyYAML's pure-Python
# safe_load/safe_dump, which PyYAML falls back to when the extension is absent.
find "$ROOT$PREFIX" -path '*/site-packages/yaml/_yaml.*.so' -delete
# compiled extensions stripped of debugging symbols, as dh_strip does
find "$ROOT$PREFIX" -type f -name '*.so' -exec strip --strip-unneeded --remove-section=.comment --remove-section=.note {} +

# commands
mkdir -p "$ROOT/usr/bin"
for cmd in supd supctl; do
    cat > "$ROOT/usr/bin/$cmd" <<EOF
#!/bin/sh
exec $PREFIX/bin/$cmd "\$@"
EOF
    chmod 0755 "$ROOT/usr/bin/$cmd"
done

# systemd integration, default config, docs
install -D -m 0644 "$REPO/packaging/supd.service" "$ROOT/lib/systemd/system/supd.service"
install -D -m 0644 "$REPO/packaging/tmpfiles.d/supd.conf" "$ROOT/usr/lib/tmpfiles.d/supd.conf"
install -D -m 0644 "$REPO/packaging/sysusers.d/supd.conf" "$ROOT/usr/lib/sysusers.d/supd.conf"
install -D -m 0644 "$REPO/packaging/supd.toml" "$ROOT/etc/supd/supd.toml"
mkdir -p "$ROOT/etc/supd/units"
# the default network (network = "bridge"); supd writes the same file on first use if it is missing
install -D -m 0644 "$REPO/packaging/supd.conflist" "$ROOT/etc/supd/networks/supd.conflist"
# documentation: the README, docs/ (the README links to docs/*.md), the
# packaging notes as README.Debian, the changelog and the copyright file
DOC="$ROOT/usr/share/doc/supd"
install -D -m 0644 "$REPO/README.md" "$DOC/README.md"
install -D -m 0644 -t "$DOC/docs" "$REPO"/docs/*.md
install -D -m 0644 "$REPO/packaging/README.md" "$DOC/README.Debian"
install -D -m 0644 "$REPO/packaging/changelog" "$DOC/changelog"
gzip -9n "$DOC/changelog"
"$PYTHON" "$REPO/packaging/copyright.py" "$(echo "$ROOT$PREFIX"/lib/python*/site-packages)" "$ROOT" "$REPO/pyproject.toml" >"$DOC/copyright"
chmod 0644 "$DOC/copyright"
install -D -m 0644 "$REPO/packaging/lintian-overrides" "$ROOT/usr/share/lintian/overrides/supd"
# man pages and supctl's shell completions, checked in (packaging/manpages.py,
# packaging/completion.py regenerate them), so this build needs neither pandoc nor shtab
for page in "$REPO"/packaging/man/*.[0-9]; do
    section=${page##*.}
    install -D -m 0644 "$page" "$ROOT/usr/share/man/man$section/$(basename "$page")"
    gzip -9n "$ROOT/usr/share/man/man$section/$(basename "$page")"
done
install -D -m 0644 "$REPO/packaging/completion/supctl" "$ROOT/usr/share/bash-completion/completions/supctl"
install -D -m 0644 "$REPO/packaging/completion/_supctl" "$ROOT/usr/share/zsh/vendor-completions/_supctl"
install -D -m 0644 "$REPO/packaging/completion/supctl.fish" "$ROOT/usr/share/fish/vendor_completions.d/supctl.fish"

ARCH=all
if find "$ROOT$PREFIX" -name '*.so' | grep -q .; then
    ARCH=$(dpkg --print-architecture)
fi

# the C libraries the compiled extensions link (libc6 (>= 2.x)), as
# dpkg-shlibdeps computes them; it wants a debian/control to read, so it runs
# in a scratch folder with a minimal one
SHLIBS=""
SOS=$(find "$ROOT$PREFIX" -type f -name '*.so')
if [ -n "$SOS" ]; then
    mkdir -p "$WORK/shlibdeps/debian"
    printf 'Source: supd\n\nPackage: supd\nArchitecture: any\n' >"$WORK/shlibdeps/debian/control"
    # (its warnings are about the staging layout and the wheels' linking:
    # shown only if it fails)
    # shellcheck disable=SC2086
    SHLIBS=$(cd "$WORK/shlibdeps" && dpkg-shlibdeps -O --warnings=0 $SOS 2>"$WORK/shlibdeps.log") \
        || { cat "$WORK/shlibdeps.log" >&2; exit 1; }
    SHLIBS=$(echo "$SHLIBS" | sed -n 's/^shlibs:Depends=//p')
    [ -n "$SHLIBS" ] || { echo "build-deb: dpkg-shlibdeps found no library dependency for $SOS" >&2; exit 1; }
    SHLIBS="$SHLIBS, "
fi

mkdir -p "$ROOT/DEBIAN"
INSTALLED_KB=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
cat > "$ROOT/DEBIAN/control" <<EOF
Package: supd
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $INSTALLED_KB
Depends: ${SHLIBS}python$PYVER, mount, containernetworking-plugins, iptables, skopeo
Recommends: systemd, tini
Section: admin
Priority: optional
Homepage: $HOMEPAGE
Description: small, fast container supervisor for one Linux host
 supd reads TOML unit files, gives each unit a systemd-style cgroup (a scope
 in a slice, through systemd's D-Bus API or cgroupfs), mounts its layered
 overlayfs root, runs it and restarts or freezes it by policy. supctl talks
 to the running daemon. Runs as supd.service (Type=notify, Delegate=yes).
EOF
printf "%s\n" /etc/supd/supd.toml /etc/supd/networks/supd.conflist > "$ROOT/DEBIAN/conffiles"
# checksums of every file but the conffiles, for debsums and dpkg --verify
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort \
    | xargs md5sum) >"$ROOT/DEBIAN/md5sums"
for script in postinst prerm postrm; do
    install -m 0755 "$REPO/packaging/deb/$script" "$ROOT/DEBIAN/$script"
done

mkdir -p "$OUT"
DEB="$OUT/supd_${VERSION}_${ARCH}.deb"
cp "$WORK/constraints.txt" "$OUT/supd_${VERSION}_${ARCH}.constraints.txt"
# --root-owner-group: files are root's in the package even when built by a user
dpkg-deb --build -Zxz --root-owner-group "$ROOT" "$DEB" >/dev/null
echo "$DEB"
