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
# Usage: packaging/build-deb.sh [--python /usr/bin/python3.11] [--out DIR]
# Env:   PIP_ARGS   extra pip arguments (an index, --constraint, --no-index ...)
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=/usr/bin/python3
OUT="$REPO/dist"
while [ $# -gt 0 ]; do
    case "$1" in
        --python) PYTHON=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

PREFIX=/opt/supd
# the interpreter by its versioned name, so the venv keeps working when
# Debian's default python3 moves to a newer minor version
PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYTHON_VERSIONED=$(dirname "$(readlink -f "$PYTHON")")/python$PYVER
[ -x "$PYTHON_VERSIONED" ] || PYTHON_VERSIONED=$PYTHON
VERSION=$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$REPO/pyproject.toml")

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
# pip is a build tool: the runtime venv does not need it (nor its scripts
# with build-time paths in their shebangs)
"$ROOT$PREFIX/bin/python" -m pip uninstall --quiet --yes pip setuptools >/dev/null 2>&1 || true
rm -f "$ROOT$PREFIX"/bin/pip* "$ROOT$PREFIX"/bin/Activate.ps1

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
# byte-compile now, with the installed paths, so that nothing under /opt/supd
# is written at run time (dpkg would not know those files)
"$ROOT$PREFIX/bin/python" -m compileall -q -s "$ROOT" -p / "$ROOT$PREFIX/lib" >/dev/null

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
install -D -m 0644 "$REPO/packaging/README.md" "$ROOT/usr/share/doc/supd/README.md"
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

mkdir -p "$ROOT/DEBIAN"
INSTALLED_KB=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
cat > "$ROOT/DEBIAN/control" <<EOF
Package: supd
Version: $VERSION
Architecture: $ARCH
Maintainer: supd developers <supd@localhost>
Installed-Size: $INSTALLED_KB
Depends: python$PYVER, util-linux, mount, containernetworking-plugins, iptables
Recommends: systemd
Section: admin
Priority: optional
Homepage: https://example.invalid/supd
Description: small, fast container supervisor for one Linux host
 supd reads TOML unit files, gives each unit a systemd-style cgroup (a scope
 in a slice, through systemd's D-Bus API or cgroupfs), mounts its layered
 overlayfs root, runs it and restarts or freezes it by policy. supctl talks
 to the running daemon. Runs as supd.service (Type=notify, Delegate=yes).
EOF
printf "%s\n" /etc/supd/supd.toml /etc/supd/networks/supd.conflist > "$ROOT/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$REPO/packaging/deb/$script" "$ROOT/DEBIAN/$script"
done

mkdir -p "$OUT"
DEB="$OUT/supd_${VERSION}_${ARCH}.deb"
# --root-owner-group: files are root's in the package even when built by a user
dpkg-deb --build -Zxz --root-owner-group "$ROOT" "$DEB" >/dev/null
echo "$DEB"
