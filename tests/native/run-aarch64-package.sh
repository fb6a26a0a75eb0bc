#!/usr/bin/env bash
# run-aarch64-package.sh - the Python package built for Linux aarch64 and a few of its
# pytest files run under qemu-aarch64, in an arm64 Debian tree made with debootstrap.
#
#   1. debootstrap --foreign --arch=arm64 bookworm (python3, numpy, pytest, regex,
#      jinja2, yaml, the Python headers, pybind11-dev), packages unpacked with dpkg-deb
#      (nothing of arm64 is executed to install them); kept in build/aarch64-root
#   2. the _core module cross-compiled with aarch64-linux-gnu-g++ by
#      tests/native/CMakeLists.txt (target _core: the wheel's sources, flags and
#      options), against that tree's Python and pybind11 headers
#   3. llamalite/, server/, cli/ and quant/ laid out as the wheel installs them, with the module
#      and the host's pure-Python `gguf` package (a test dependency) in build/aarch64-site
#   4. python3 -m pytest on PYTEST_ARGS under qemu-aarch64 -L build/aarch64-root
#
# Usage: tests/native/run-aarch64-package.sh [PYTEST_ARGS...]
#   default: tests/test_matmul.py tests/test_forward_synthetic.py -k "not real_model"
# Needs network access to deb.debian.org the first time (DEBIAN_MIRROR overrides), and
# debootstrap, qemu-user and g++-aarch64-linux-gnu (installed with apt-get when running
# as root). Slow: Python and the kernels run emulated (docs/platforms.md has the
# measured times); not part of the pytest suite.
set -eu
cd "$(dirname "$0")/../.."
REPO=$(pwd)
ROOT=$REPO/build/aarch64-root
SITE=$REPO/build/aarch64-site
BUILD=$REPO/build/aarch64-module
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$REPO/build"
if [ $# -gt 0 ]; then
  PYTEST_ARGS=("$@")
else  # the real-model matmul tests take minutes natively: hours emulated
  PYTEST_ARGS=(tests/test_matmul.py tests/test_forward_synthetic.py -k "not real_model")
fi

missing=""
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
command -v qemu-aarch64 >/dev/null 2>&1 || missing="$missing qemu-user"
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing="$missing g++-aarch64-linux-gnu"
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing:$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "missing tools; install them with: apt-get install$missing"
    exit 1
  fi
fi

# --- 1. the arm64 tree ----------------------------------------------------------------
if [ ! -x "$ROOT/usr/bin/python3" ]; then
  echo "[${SECONDS}s] debootstrap arm64 bookworm into $ROOT"
  rm -rf "$ROOT"
  debootstrap --arch=arm64 --foreign --variant=minbase \
    --include=python3,python3-numpy,python3-pytest,python3-regex,python3-jinja2,python3-yaml,python3-dev,pybind11-dev \
    bookworm "$ROOT" "$MIRROR" >"$REPO/build/aarch64-debootstrap.log" 2>&1 \
    || { tail -20 "$REPO/build/aarch64-debootstrap.log"; exit 1; }
  # --foreign unpacks only the base; the rest waits as .deb files for a second stage
  # that would run arm64 maintainer scripts. Unpacking them is enough to run Python.
  for deb in "$ROOT"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
  # What update-alternatives would have linked for numpy.
  ln -sf blas/libblas.so.3 "$ROOT/usr/lib/aarch64-linux-gnu/libblas.so.3"
  ln -sf lapack/liblapack.so.3 "$ROOT/usr/lib/aarch64-linux-gnu/liblapack.so.3"
fi
PY=(qemu-aarch64 -L "$ROOT" "$ROOT/usr/bin/python3")

# --- 2. the module ------------------------------------------------------------------
pyver=$(cd "$ROOT/usr/include" && ls -d python3.* | head -1)        # python3.11
suffix=".cpython-$(echo "${pyver#python}" | tr -d .)-aarch64-linux-gnu.so"   # .cpython-311-...
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
# pybind11 and the multiarch pyconfig.h (<aarch64-linux-gnu/python3.11/pyconfig.h>)
# through a folder of links: the tree's whole /usr/include would shadow the cross
# compiler's C library headers.
mkdir -p "$BUILD.include"
ln -sfn "$ROOT/usr/include/pybind11" "$BUILD.include/pybind11"
ln -sfn "$ROOT/usr/include/aarch64-linux-gnu" "$BUILD.include/aarch64-linux-gnu"
includes="$ROOT/usr/include/$pyver;$BUILD.include"
echo "[${SECONDS}s] cross-compiling the _core module (aarch64-linux-gnu-g++)"
cmake -S tests/native -B "$BUILD" -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ -DLLAMALITE_MODULE_SUFFIX="$suffix" \
  -DLLAMALITE_PYTHON_INCLUDES="$includes" -DLLAMALITE_VERSION="$version" >"$BUILD.log" 2>&1 \
  || { tail -20 "$BUILD.log"; exit 1; }
cmake --build "$BUILD" --target _core -j "$(nproc)" >>"$BUILD.log" 2>&1 || { grep -E "error" "$BUILD.log" | head -20; exit 1; }

# --- 3. the package, laid out as the wheel installs it ---------------------------------
rm -rf "$SITE"
mkdir -p "$SITE"
cp -r llamalite "$SITE/llamalite"
cp -r server "$SITE/llamalite/server"
cp -r cli "$SITE/llamalite/cli"
cp -r quant "$SITE/llamalite/quant"
find "$SITE" -name "_core*.so" -delete
cp "$BUILD/_core$suffix" "$SITE/llamalite/"
gguf_dir=$("${PYTHON:-python3}" -c 'import gguf, os; print(os.path.dirname(gguf.__file__))')
cp -r "$gguf_dir" "$SITE/gguf"

# --- 4. the tests, emulated ---------------------------------------------------------
echo "[${SECONDS}s] system_info under qemu-aarch64:"
PYTHONPATH="$SITE" "${PY[@]}" -P -c "import llamalite; print(llamalite.system_info())"
echo "[${SECONDS}s] pytest ${PYTEST_ARGS[*]} under qemu-aarch64"
status=0
PYTHONPATH="$SITE" "${PY[@]}" -P -m pytest -q -p no:cacheprovider "${PYTEST_ARGS[@]}" || status=$?
echo "[${SECONDS}s] done"
exit $status
