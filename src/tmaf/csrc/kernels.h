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
//  columns: one table `lv`, blocked per vector of L channels (L = lanes of the ISA, n_vec =
//           ceil(C / L)); lane l of block v is channel v * L + l:
//           forward  (n_vec, 2b+1, 2m+1, L): for output channel i and offset d, the m
//                    breakpoints of channel i + d, then the m+1 levels[i, d+b, :];
//           backward (n_vec, m + (2b+1)(m+1), L): for input channel j, its m breakpoints, then
//                    for each offset d the m+1 levels[j-d, d+b, :].
//           Entries of channels outside 0..C-1 (or out of the band) are 0.
// Level-gradient partial sums (backward), one slot per task in fixed task order:
//  rows:    partial (n_tasks, 2b+1, P), the task's input channel j at offset d.
//  columns: partial (n_rb, n_vec, 2b+1, P, L): input channel j at offset d; a task owns its
//           rows block and its channel vectors, and accumulates there directly.
//  P = m+1 level sums (sum of g x per interval), and for the continuous form (affine kernels)
//  m+1 more: the intercept sums (sum of g per interval); P = 2(m+1).
// Continuous form (affine kernels): the intercepts `ic` (C, 2b+1, m+1) in the rows layout, laid
// like the levels; in the columns layout the forward table holds, per offset, m breakpoints,
// m+1 levels and m+1 intercepts (blk = 3m+2) and the backward table is the jump form's.
struct KernelArgs {
  const void* x = nullptr;
  const void* g = nullptr;
  void* out = nullptr;
  void* gx = nullptr;
  void* partial = nullptr;
  const void* bp = nullptr;
  const void* lv = nullptr;
  const void* ic = nullptr;  // intercepts, rows layout of the affine forward
  int64_t outer = 0, C = 0, inner = 0, b = 0, m = 0;
  int64_t oblock = 1, sblock = 1, n_sb = 1;   // rows layout
  int64_t rblock = 1, cblock = 1, n_cb = 1;   // columns layout
  int64_t lanes = 0;                          // columns layout: L of the ISA and dtype
};

using TaskFn = void (*)(const KernelArgs&, int64_t t0, int64_t t1);

// Kernels specialised for these m (number of breakpoints); index 0 is the any-m kernel.
constexpr int kSpecialisedM[] = {0, 1, 5, 9, 17};
constexpr int kNumVariants = 5;
constexpr int kMaxM = 256;  // the any-m kernel keeps m+1 accumulators on the stack
constexpr int kMaxColsBlock = 1024;  // channels per task in the columns layout, at most

struct KernelSet {
  const char* isa = nullptr;
  int lanes[2] = {0, 0};  // vector lanes for float, double
  // [form: 0 jump, 1 continuous (affine)][dtype: 0 float, 1 double][variant]
  TaskFn fwd_rows[2][2][kNumVariants] = {};
  TaskFn bwd_rows[2][2][kNumVariants] = {};
  TaskFn fwd_cols[2][2][kNumVariants] = {};
  TaskFn bwd_cols[2][2][kNumVariants] = {};
};

void fill_kernels_default(KernelSet* set);
#if defined(__x86_64__) || defined(_M_X64)
void fill_kernels_avx2(KernelSet* set);
void fill_kernels_avx512(KernelSet* set);
#endif

}  // namespace tmaf_native
