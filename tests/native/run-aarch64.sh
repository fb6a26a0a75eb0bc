#!/usr/bin/env bash
# run-aarch64.sh - cross-builds the core's kernels with tests/native/test_kernels_arm.cpp
# for aarch64 and runs every aarch64 kernel set under qemu user emulation:
#   neon     qemu-aarch64 -cpu cortex-a53  (Armv8.0: no dot product)
#   dotprod  qemu-aarch64 -cpu cortex-a76  (Armv8.2 + SDOT, no I8MM)
#   i8mm     qemu-aarch64 -cpu max         (everything)
# Each run checks every kernel entry of its set against the generic kernels and the
# forward pass of tests/data/arm_forward against the x86 logits, and that the sets
# the emulated CPU lacks are refused. One line per set; exit status non-zero on any
# failure.
#
# Needs aarch64-linux-gnu-g++ and qemu-aarch64 (and $PYTHON, default python3, with numpy
# and gguf to write the synthetic model) (Debian/Ubuntu: g++-aarch64-linux-gnu,
# qemu-user); installs them with apt-get when missing and this runs as root.
# BUILD_DIR (default build/aarch64-test under the repository) holds the objects.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${BUILD_DIR:-$root/build/aarch64-test}"
CXX="${AARCH64_CXX:-aarch64-linux-gnu-g++}"
QEMU="${QEMU_AARCH64:-qemu-aarch64}"
SYSROOT="${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}"

if ! command -v "$CXX" >/dev/null || ! command -v "$QEMU" >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing g++-aarch64-linux-gnu qemu-user (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends g++-aarch64-linux-gnu qemu-user >/dev/null
  else
    echo "run-aarch64.sh: needs $CXX and $QEMU (apt-get install g++-aarch64-linux-gnu qemu-user)" >&2
    exit 3
  fi
fi

mkdir -p "$build"
# The options of cmake/isa_flags.cmake (LLAMALITE_CXX_OPTIONS and the per-set flags).
opts=(-std=c++17 -O2 -ffp-contract=off -fno-math-errno -Wall -Wextra -Wno-unused-parameter -pthread
      -I"$root/csrc")
declare -A set_flags=([neon]="-march=armv8-a" [dotprod]="-march=armv8.2-a+dotprod"
                      [i8mm]="-march=armv8.2-a+dotprod+i8mm")
# whether obj is missing or older than its source or any csrc header / .inc
stale() {
  [ -f "$2" ] || return 0
  [ "$1" -nt "$2" ] && return 0
  local h
  for h in "$root"/csrc/*.h "$root"/csrc/*.inc; do [ "$h" -nt "$2" ] && return 0; done
  return 1
}
objs=()
pids=()
jobs_max="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
for src in "$root"/csrc/*.cpp "$here/test_kernels_arm.cpp"; do
  name="$(basename "$src" .cpp)"
  flags=()
  case "$name" in
    bindings|*_avx2|*_avx512) continue ;;   # Python binding; x86 sets
    kernels_neon|kernels_dotprod|kernels_i8mm) flags=(${set_flags[${name#kernels_}]}) ;;
  esac
  obj="$build/$name.o"
  objs+=("$obj")
  if stale "$src" "$obj"; then
    "$CXX" "${opts[@]}" "${flags[@]}" -c "$src" -o "$obj" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$jobs_max" ]; then
      wait "${pids[0]}"
      pids=("${pids[@]:1}")
    fi
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
exe="$build/test_kernels_arm"
"$CXX" -pthread -o "$exe" "${objs[@]}"

status=0
# Each set's object: only its table filler exported, no weak symbols (kernel_table.h,
# ODR), and no instruction of a later set (neon: no SDOT / SMMLA; dotprod: no SMMLA).
OBJDUMP="${CXX%g++}objdump"
NM="${CXX%g++}nm"
for s in neon dotprod i8mm; do
  obj="$build/kernels_$s.o"
  exported="$("$NM" -g --defined-only "$obj" | awk '$2 ~ /^[TW]$/ {print $3}')"
  if [ "$exported" != "_ZN2ll$((${#s} + 13))fill_${s}_kernelsEPNS_11KernelTableE" ] || "$NM" "$obj" | grep -q ' [wWV] '; then
    echo "kernels_$s.o exports more than fill_${s}_kernels: $exported" >&2
    status=1
  fi
  case $s in neon) banned='sdot|smmla' ;; dotprod) banned='smmla' ;; i8mm) banned='' ;; esac
  if [ -n "$banned" ] && "$OBJDUMP" -d "$obj" | grep -qE "\s($banned)\s"; then
    echo "kernels_$s.o uses instructions beyond its set ($banned)" >&2
    status=1
  fi
done
# the synthetic model of the forward-pass check (numpy + gguf, as the test extras have)
data="$root/tests/data/arm_forward"
model="$build/arm_forward.gguf"
"${PYTHON:-python3}" "$root/tests/tools/make_arm_forward.py" --model "$model"
want="$(awk '$1 == "sha256" {print $2}' "$data/desc.txt")"
got="$(sha256sum "$model" | awk '{print $1}')"
if [ "$want" != "$got" ]; then
  echo "tests/tools/make_arm_forward.py --model wrote another file than tests/data/arm_forward describes" \
       "(sha256 $got, expected $want): rerun it without --model on x86 and commit tests/data/arm_forward" >&2
  exit 1
fi
run() {   # cpu isa expected-refusals...
  local cpu="$1" isa="$2"
  shift 2
  if ! "$QEMU" -L "$SYSROOT" -cpu "$cpu" "$exe" "$isa" "$model" "$data"; then
    echo "$isa (qemu -cpu $cpu): FAILED" >&2
    status=1
  fi
  for lacking in "$@"; do
    if ! "$QEMU" -L "$SYSROOT" -cpu "$cpu" "$exe" --refused "$lacking" >/dev/null; then
      echo "$isa (qemu -cpu $cpu): forcing $lacking was not refused" >&2
      status=1
    fi
  done
}
run cortex-a53 neon dotprod i8mm avx2
run cortex-a76 dotprod i8mm
run max i8mm
exit $status
