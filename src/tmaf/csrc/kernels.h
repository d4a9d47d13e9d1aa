// Plain-data interface between the operator layer (ops.cpp, which knows torch) and the
// per-ISA kernels (kernels_*.cpp, which know nothing of torch). Definitions: docs/method.md.
#pragma once
#include <cstdint>

namespace tmaf_native {

// Every tensor is viewed through one of two layouts:
//  rows:    x is (outer, C, inner) contiguous with inner > 1 (NCHW, (N, C, L)); a task is
//           (outer block ob, channel c, inner block sb), t = (ob * C + c) * n_sb + sb.
//  columns: x is (outer, C) contiguous (channels innermost: (N, C), channels-last); a task is
//           (row block rb, channel block cb), t = rb * n_cb + cb.
// Tables are in the compute dtype T (float or double), read-only:
//  rows:    bp (C, m) per channel, lv the levels (C, 2b+1, m+1).
//  columns: bp (m, ldt), level tables (2b+1, m+1, ldt); column c + b holds channel c, zero
//           (level) or 0.0 (breakpoint) outside 0..C-1. The forward table is indexed by the
//           output channel i (levels[i, d+b, k]), the backward one by the input channel
//           j = i + d (levels[j-d, d+b, k]); out-of-band entries are 0.
// Level-gradient partial sums (backward), one slot per task in fixed task order:
//  rows:    partial (n_tasks, 2b+1, m+1), the task's input channel j at offset d.
//  columns: partial (n_rb, 2b+1, m+1, ldt), column j + b.
struct KernelArgs {
  const void* x = nullptr;
  const void* g = nullptr;
  void* out = nullptr;
  void* gx = nullptr;
  void* partial = nullptr;
  const void* bp = nullptr;
  const void* lv = nullptr;
  int64_t outer = 0, C = 0, inner = 0, b = 0, m = 0;
  int64_t oblock = 1, sblock = 1, n_sb = 1;   // rows layout
  int64_t rblock = 1, cblock = 1, n_cb = 1;   // columns layout
  int64_t ldt = 0;                            // columns layout: table leading dimension
};

using TaskFn = void (*)(const KernelArgs&, int64_t t0, int64_t t1);

// Kernels specialised for these m (number of breakpoints); index 0 is the any-m kernel.
constexpr int kSpecialisedM[] = {0, 1, 5, 9, 17};
constexpr int kNumVariants = 5;
constexpr int kMaxM = 256;  // the any-m kernel keeps m+1 accumulators on the stack

struct KernelSet {
  const char* isa = nullptr;
  // [dtype: 0 float, 1 double][variant]
  TaskFn fwd_rows[2][kNumVariants] = {};
  TaskFn bwd_rows[2][kNumVariants] = {};
  TaskFn fwd_cols[2][kNumVariants] = {};
  TaskFn bwd_cols[2][kNumVariants] = {};
};

void fill_kernels_default(KernelSet* set);
#if defined(__x86_64__) || defined(_M_X64)
void fill_kernels_avx2(KernelSet* set);
void fill_kernels_avx512(KernelSet* set);
#endif

}  // namespace tmaf_native
