#!/usr/bin/env bash
# run-cross-compile.sh - the core's compile checks, one per compiler and target:
#
#   gcc-x86_64-linux      g++ (host)                       core + bindings.cpp, linked
#   clang-x86_64-linux    clang++ (host)                   core + bindings.cpp, linked
#   gcc-aarch64-linux     aarch64-linux-gnu-g++            core, linked (static); the
#                         program also runs under qemu-aarch64 where qemu-user is installed
#   mingw-x86_64-windows  x86_64-w64-mingw32-g++-posix     core, linked (static .exe);
#                         compile-only: nothing here runs Windows code
#
# Each target configures tests/native/CMakeLists.txt (the per-ISA flags come from
# cmake/isa_flags.cmake, as in the wheel) and builds every csrc/*.cpp once at -O0
# -Werror, linked with tests/native/platform_test.cpp. bindings.cpp needs the target's
# Python headers, which exist here only for the host.
#
# Usage: tests/native/run-cross-compile.sh [TARGET...]     (default: all four)
# PYTHON: the interpreter whose headers and pybind11 the bindings are compiled with
# (default python3; without pybind11 the x86-64 checks leave bindings.cpp out and say so).
# Missing compilers (and cmake, qemu-user) are installed with apt-get when running as
# root on Debian/Ubuntu; otherwise the missing packages are named and the check fails.
# Build folders: build/cross/TARGET (incremental). Prints one line per check and exits
# non-zero when any check failed.
set -u
cd "$(dirname "$0")/../.."
REPO=$(pwd)
BUILD=${LLAMALITE_CROSS_BUILD:-$REPO/build/cross}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
ALL="gcc-x86_64-linux clang-x86_64-linux gcc-aarch64-linux mingw-x86_64-windows"
TARGETS=${*:-$ALL}

compiler_of() {
  case $1 in
    gcc-x86_64-linux) echo g++ ;;
    clang-x86_64-linux) echo clang++ ;;
    gcc-aarch64-linux) echo aarch64-linux-gnu-g++ ;;
    # The posix thread model: GCC 12's win32 model has no std::thread / std::mutex.
    mingw-x86_64-windows) echo x86_64-w64-mingw32-g++-posix ;;
    *) return 1 ;;
  esac
}

package_of() {
  case $1 in
    g++) echo g++ ;;
    clang++) echo clang ;;
    aarch64-linux-gnu-g++) echo g++-aarch64-linux-gnu ;;
    x86_64-w64-mingw32-g++-posix) echo g++-mingw-w64-x86-64-posix ;;
    cmake) echo cmake ;;
    qemu-aarch64) echo qemu-user ;;
  esac
}

# --- the tools: install what is missing --------------------------------------------
need="cmake"
for t in $TARGETS; do
  cxx=$(compiler_of "$t") || { echo "unknown target '$t' (known: $ALL)"; exit 2; }
  need="$need $cxx"
  [ "$t" = gcc-aarch64-linux ] && need="$need qemu-aarch64"
done
missing=""
for tool in $need; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $(package_of "$tool")"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    mkdir -p "$BUILD"
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >"$BUILD/apt.log" 2>&1 \
      || { echo "apt-get install failed:"; tail -20 "$BUILD/apt.log"; }
  else
    echo "missing tools; install them with: apt-get install$missing"
  fi
fi

# --- the checks ---------------------------------------------------------------------
# The host Python's headers and pybind11 (PYTHON, else python3) for bindings.cpp.
py_includes=$("${PYTHON:-python3}" -c 'import sysconfig, pybind11; print(sysconfig.get_paths()["include"] + ";" + pybind11.get_include())' 2>/dev/null)
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)

failed=0
report() {  # compiler target result
  printf '%-32s %-22s %s\n' "$1" "$2" "$3"
}

for t in $TARGETS; do
  cxx=$(compiler_of "$t")
  dir=$BUILD/$t
  mkdir -p "$dir"
  log=$dir/log.txt
  case $t in
    *-x86_64-linux) triple=x86_64-linux ;;
    gcc-aarch64-linux) triple=aarch64-linux ;;
    mingw-x86_64-windows) triple=x86_64-windows ;;
  esac
  if ! command -v "$cxx" >/dev/null 2>&1; then
    report "$cxx" "$triple" "FAIL: compiler missing (apt-get install $(package_of "$cxx"))"
    failed=1
    continue
  fi
  args=(-S "$REPO/tests/native" -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_COMPILER="$cxx")
  what="core"
  case $t in
    *-x86_64-linux)
      if [ -n "$py_includes" ]; then
        args+=(-DLLAMALITE_CHECK_BINDINGS=ON "-DLLAMALITE_PYTHON_INCLUDES=$py_includes")
        what="core+bindings"
      fi ;;
    gcc-aarch64-linux)
      args+=(-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64) ;;
    mingw-x86_64-windows)
      args+=(-DCMAKE_SYSTEM_NAME=Windows -DCMAKE_SYSTEM_PROCESSOR=AMD64) ;;
  esac
  version=$("$cxx" --version | head -1)
  if cmake "${args[@]}" >"$log" 2>&1 && cmake --build "$dir" -j "$JOBS" >>"$log" 2>&1; then
    report "$cxx" "$triple" "OK: $what compiled and linked ($version)"
  else
    report "$cxx" "$triple" "FAIL: see $log"
    grep -E "error|Error" "$log" | head -20
    failed=1
    continue
  fi
  if [ "$t" = gcc-aarch64-linux ]; then
    if command -v qemu-aarch64 >/dev/null 2>&1; then
      if qemu-aarch64 "$dir/platform_test" >"$dir/run.txt" 2>&1 && tail -1 "$dir/run.txt" | grep -q "all passed"; then
        report "qemu-aarch64 platform_test" "$triple" "OK: ran (platform services, thread pool)"
      else
        report "qemu-aarch64 platform_test" "$triple" "FAIL: see $dir/run.txt"
        tail -5 "$dir/run.txt"
        failed=1
      fi
    else
      report "qemu-aarch64 platform_test" "$triple" "FAIL: qemu-aarch64 missing (apt-get install qemu-user)"
      failed=1
    fi
  fi
done
exit $failed
