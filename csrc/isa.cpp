// isa.cpp - CPU feature detection (cpuid + xgetbv) and the active kernel table.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernel_table.h"
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define LL_X86 1
#include <cpuid.h>
#endif
#if defined(LL_X86) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace ll {
namespace {

struct CpuFeatures {
  bool os_avx = false;     // OS saves YMM state (XCR0 bits 1, 2)
  bool os_avx512 = false;  // OS saves opmask + ZMM state (XCR0 bits 5, 6, 7)
  bool avx = false, avx2 = false, fma = false, f16c = false, bmi2 = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512bf16 = false, avxvnni = false;
  bool amx_tile = false, amx_int8 = false;
  bool os_amx = false;     // XCR0 bits 17, 18 (tile config + tile data)
  bool amx_perm = false;   // Linux granted this process the tile data (arch_prctl)
};

#ifdef LL_X86
// Linux keeps AMX tile data off until a process asks (ARCH_REQ_XCOMP_PERM for
// XFEATURE_XTILEDATA); the grant covers every thread of the process.
bool request_amx_permission() {
#if defined(LL_X86) && defined(__linux__) && defined(SYS_arch_prctl)
  constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#ifdef LL_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1;
  f.avx = (c >> 28) & 1;
  f.fma = (c >> 12) & 1;
  f.f16c = (c >> 29) & 1;
  if (osxsave) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    f.os_avx = (lo & 0x6) == 0x6;
    f.os_avx512 = f.os_avx && (lo & 0xE0) == 0xE0;
    f.os_amx = (lo & 0x60000) == 0x60000;
  }
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = (b >> 5) & 1;
    f.bmi2 = (b >> 8) & 1;
    f.avx512f = (b >> 16) & 1;
    f.avx512dq = (b >> 17) & 1;
    f.avx512bw = (b >> 30) & 1;
    f.avx512vl = (b >> 31) & 1;
    f.avx512vnni = (c >> 11) & 1;
    f.amx_int8 = (d >> 25) & 1;
    f.amx_tile = (d >> 24) & 1;
    unsigned max_sub = a;
    if (max_sub >= 1) {
      __cpuid_count(7, 1, a, b, c, d);
      f.avxvnni = (a >> 4) & 1;
      f.avx512bf16 = (a >> 5) & 1;
    }
  }
#endif
  // Test hook: LLAMALITE_DISABLE_FEATURES="avx512vnni,avx2" makes the core act
  // as if the CPU lacked those features (to test fallback and error messages).
  if (const char* env = std::getenv("LLAMALITE_DISABLE_FEATURES")) {
    const std::string list = "," + std::string(env) + ",";
    auto off = [&list](bool& flag, const char* name) {
      if (list.find("," + std::string(name) + ",") != std::string::npos) flag = false;
    };
    off(f.avx, "avx");
    off(f.avx2, "avx2");
    off(f.fma, "fma");
    off(f.f16c, "f16c");
    off(f.bmi2, "bmi2");
    off(f.avx512f, "avx512f");
    off(f.avx512bw, "avx512bw");
    off(f.avx512vl, "avx512vl");
    off(f.avx512dq, "avx512dq");
    off(f.avx512vnni, "avx512vnni");
    off(f.avx512bf16, "avx512bf16");
    off(f.avxvnni, "avxvnni");
    off(f.amx_tile, "amx-tile");
    off(f.amx_int8, "amx-int8");
  }
  // Only a process that may use the tiles asks for them (the grant enlarges each
  // thread's saved state).
#ifdef LL_X86
  if (f.amx_tile && f.amx_int8 && f.os_amx && f.avx512f && amx_kernels_built()) f.amx_perm = request_amx_permission();
#endif
  return f;
}

const CpuFeatures& cpu() {
  static const CpuFeatures f = detect();
  return f;
}

// What `isa` needs that this CPU (or its OS) lacks; empty when it can run it.
std::string missing_features(ISA isa) {
  const CpuFeatures& f = cpu();
  std::string miss;
  auto need = [&miss](bool have, const char* name) {
    if (!have) miss += (miss.empty() ? "" : " ") + std::string(name);
  };
  if (isa == ISA::generic) return miss;
#ifndef LL_X86
  return "x86-64 CPU";
#endif
  need(f.avx, "avx");
  need(f.os_avx, "os-avx-state(xgetbv)");
  need(f.avx2, "avx2");
  need(f.fma, "fma");
  need(f.f16c, "f16c");
  need(f.bmi2, "bmi2");
  if (isa == ISA::avx512 || isa == ISA::amx) {
    need(f.avx512f, "avx512f");
    need(f.avx512bw, "avx512bw");
    need(f.avx512vl, "avx512vl");
    need(f.avx512dq, "avx512dq");
    need(f.avx512vnni, "avx512vnni");
    need(f.os_avx512, "os-avx512-state(xgetbv)");
  }
  if (isa == ISA::amx) {
    need(f.amx_tile, "amx-tile");
    need(f.amx_int8, "amx-int8");
    need(f.os_amx, "os-amx-state(xgetbv)");
    // amx_kernels_built lives in the AVX-512 unit: only asked on CPUs that run it.
#ifdef LL_X86
    if (miss.empty()) need(amx_kernels_built(), "amx-kernels(this build's compiler lacked -mamx-int8)");
#endif
    if (miss.empty()) need(f.amx_perm, "amx-permission(arch_prctl)");
  }
  return miss;
}

struct Tables {
  KernelTable t[4];
  Tables() {
    fill_generic_kernels(&t[0]);
    for (int i = 1; i < 4; i++) t[i] = t[0];
    // The fill functions live in ISA units and may themselves use those
    // instructions, so only call them when the CPU can run them (and only
    // reference them where those units are built).
#ifdef LL_X86
    if (missing_features(ISA::avx2).empty()) fill_avx2_kernels(&t[1]);
    t[2] = t[1];
    if (missing_features(ISA::avx512).empty()) fill_avx512_kernels(&t[2]);
    t[3] = t[2];
    if (missing_features(ISA::amx).empty()) fill_amx_kernels(&t[3]);
#endif
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

ISA g_active = best_supported_isa();

}  // namespace

const char* isa_name(ISA isa) {
  switch (isa) {
    case ISA::generic: return "generic";
    case ISA::avx2: return "avx2";
    case ISA::avx512: return "avx512";
    case ISA::amx: return "amx";
  }
  return "unknown";
}

ISA isa_from_name(const std::string& name) {
  for (ISA isa : {ISA::generic, ISA::avx2, ISA::avx512, ISA::amx}) {
    if (name == isa_name(isa)) return isa;
  }
  throw std::invalid_argument("unknown instruction set '" + name +
                              "': expected generic, avx2, avx512 or amx");
}

bool isa_supported(ISA isa) { return missing_features(isa).empty(); }

ISA best_supported_isa() {
  if (isa_supported(ISA::amx)) return ISA::amx;
  if (isa_supported(ISA::avx512)) return ISA::avx512;
  if (isa_supported(ISA::avx2)) return ISA::avx2;
  return ISA::generic;
}

ISA active_isa() { return g_active; }

void set_active_isa(ISA isa) {
  std::string miss = missing_features(isa);
  if (!miss.empty()) {
    throw std::runtime_error(std::string("instruction set '") + isa_name(isa) +
                             "' is not available on this CPU: missing " + miss +
                             " (use LLAMALITE_ISA=" + isa_name(best_supported_isa()) + " or unset it)");
  }
  g_active = isa;
}

std::string cpu_features() {
  const CpuFeatures& f = cpu();
  std::string s;
  auto add = [&s](bool have, const char* name) {
    if (have) s += (s.empty() ? "" : " ") + std::string(name);
  };
  add(f.avx && f.os_avx, "avx");
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.bmi2, "bmi2");
  add(f.avxvnni, "avxvnni");
  add(f.avx512f && f.os_avx512, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512vl, "avx512vl");
  add(f.avx512dq, "avx512dq");
  add(f.avx512vnni, "avx512vnni");
  add(f.avx512bf16, "avx512bf16");
  add(f.amx_tile && f.os_amx, "amx-tile");
  add(f.amx_int8 && f.os_amx, "amx-int8");
  return s;
}

const KernelTable& kernels_for(int isa) { return tables().t[isa]; }
const KernelTable& active_kernels() { return tables().t[(int)g_active]; }

}  // namespace ll
