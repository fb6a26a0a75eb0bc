# The per-instruction-set compile flags, one place for the core (CMakeLists.txt) and the
# benchmark module (bench/native/CMakeLists.txt).
#
# llamalite_isa_sources(VAR): in the source list VAR, files named *_avx2.cpp get the AVX2
# flags and *_avx512.cpp the AVX-512 ones (with AMX-INT8 tiles on Linux where the
# compiler has them: GCC 11+, Clang 12+; the code still runs on CPUs without AMX,
# isa.cpp decides); off x86 those files are dropped. Files named *_neon.cpp,
# *_dotprod.cpp and *_i8mm.cpp get the aarch64 flags below and are dropped off
# aarch64. Everything else is compiled for the target's
# baseline, and the best kernel set is chosen at import (x86: cpuid/xgetbv; aarch64:
# HWCAP bits or sysctl): no -march=native in a shipped build.
include(CheckCXXCompilerFlag)
include(CheckCXXSourceCompiles)

# The kernels use GCC/Clang extensions (attributes, builtins, vector intrinsics with
# per-file -m flags): MSVC's cl cannot build them.
if(CMAKE_CXX_COMPILER_ID STREQUAL "MSVC")
  message(FATAL_ERROR "llamalite's core needs GCC or Clang; MSVC (cl.exe) is not supported. "
                      "On Windows use MinGW-w64 GCC with posix threads (e.g. MSYS2's UCRT64 g++).")
endif()
# aarch64 or not, like x86 below, by what the compiler targets.
check_cxx_source_compiles("
#if !defined(__aarch64__)
#error not aarch64
#endif
int main() { return 0; }" LLAMALITE_ARM64)

# aarch64 sets (kernels_neon.cpp, kernels_dotprod.cpp, kernels_i8mm.cpp). The i8mm
# unit names Armv8.2 plus its two extensions rather than armv8.6-a: CPUs with I8MM
# but an older base (Neoverse V1 is Armv8.4) must not meet 8.5/8.6 instructions
# the compiler might choose on its own.
set(LLAMALITE_NEON_FLAGS -march=armv8-a)
set(LLAMALITE_DOTPROD_FLAGS -march=armv8.2-a+dotprod)
set(LLAMALITE_I8MM_FLAGS -march=armv8.2-a+dotprod+i8mm)

# x86 or not by what the compiler targets (a cross compiler's target), not by the
# machine that runs CMake; a macOS universal build (arm64 and x86_64 at once) is not
# x86 here, as its arm64 half cannot take -mavx2, and gets the generic kernels only.
check_cxx_source_compiles("
#if !defined(__x86_64__) && !defined(__i386__)
#error not x86
#endif
int main() { return 0; }" LLAMALITE_X86)

set(LLAMALITE_AVX2_FLAGS -mavx2 -mfma -mf16c -mbmi2)
set(LLAMALITE_AVX512_FLAGS ${LLAMALITE_AVX2_FLAGS} -mavx512f -mavx512bw -mavx512vl -mavx512dq
    -mavx512vnni)
# AMX tiles only for Linux, the one OS where isa.cpp asks for the tile permission
# (MinGW GCC 12 cannot build them either: its _tile_loadd passes the stride as a
# 32-bit long).
if(LLAMALITE_X86 AND CMAKE_SYSTEM_NAME STREQUAL "Linux")
  check_cxx_compiler_flag("-mamx-tile -mamx-int8" LLAMALITE_CXX_HAS_AMX)
  if(LLAMALITE_CXX_HAS_AMX)
    list(APPEND LLAMALITE_AVX512_FLAGS -mamx-tile -mamx-int8)
  endif()
endif()

# -ffp-contract=off: GCC fuses a*b+c into FMA by default, which changes rounding;
# dequantization must match gguf.quants bit for bit. Kernels that want FMA ask for it
# with intrinsics.
set(LLAMALITE_CXX_OPTIONS -O3 -ffp-contract=off -fno-math-errno -Wall -Wextra
    -Wno-unused-parameter)

function(llamalite_isa_sources var)
  set(sources ${${var}})
  foreach(src ${${var}})
    if(src MATCHES "_avx512\\.cpp$" OR src MATCHES "_avx2\\.cpp$")
      if(NOT LLAMALITE_X86)
        list(REMOVE_ITEM sources ${src})
      elseif(src MATCHES "_avx512\\.cpp$")
        set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS "${LLAMALITE_AVX512_FLAGS}")
      else()
        set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS "${LLAMALITE_AVX2_FLAGS}")
      endif()
    endif()
  endforeach()
  foreach(src ${${var}})
    foreach(arm_set NEON DOTPROD I8MM)
      string(TOLOWER ${arm_set} arm_name)
      if(src MATCHES "_${arm_name}\\.cpp$")
        if(NOT LLAMALITE_ARM64)
          list(REMOVE_ITEM sources ${src})
        else()
          set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS "${LLAMALITE_${arm_set}_FLAGS}")
        endif()
      endif()
    endforeach()
  endforeach()
  set(${var} ${sources} PARENT_SCOPE)
endfunction()
