// Plain-data interface between the operator layer (ops.cpp, which knows torch) and the
// per-ISA kernels (kernels_*.cpp, which know nothing of torch). Definitions: docs/method.md.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

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
  const void* ic = nullptr;  // intercepts (C, 2b+1, m+1): the affine forward (rows, uniform columns)
  // Columns layout with the uniform index (1 <= b <= kUniformMaxB, every channel's breakpoints
  // evenly spaced, see evenly_spaced): per input channel s_0 (C values), then 1/h (C), then its
  // breakpoints followed by NaN (C, m+1); `lv` then holds the levels (C, 2b+1, m+1) as given
  // (not the blocked table) and `ic` the intercepts. nullptr: the blocked tables.
  const void* grid = nullptr;
  int64_t outer = 0, C = 0, inner = 0, b = 0, m = 0;
  int64_t oblock = 1, sblock = 1, n_sb = 1;   // rows layout
  int64_t rblock = 1, cblock = 1, n_cb = 1;   // columns layout
  int64_t lanes = 0;                          // columns layout: L of the ISA and dtype
  // Columns layout, 1 <= b <= kUniformMaxB, m + 1 <= 16, float with 8 lanes: the 8 x 8 tile
  // kernels (kernels_impl.h) and their tables in bp and lv; false: the other columns kernels.
  bool transposed = false;
};

using TaskFn = void (*)(const KernelArgs&, int64_t t0, int64_t t1);

// Kernels specialised for these m (number of breakpoints); index 0 is the any-m kernel.
constexpr int kSpecialisedM[] = {0, 1, 5, 9, 17};
constexpr int kNumVariants = 5;
constexpr int kMaxM = 256;  // the any-m kernel keeps m+1 accumulators on the stack
constexpr int kMaxColsBlock = 1024;  // channels per task in the columns layout, at most
constexpr int kUniformMaxB = 3;      // bandwidths of the columns layout's uniform-index kernels
constexpr int64_t kTileMaxBlock = 256;  // channels per task of the columns layout's 8 x 8 tile kernels

// Whether m >= 2 breakpoints s are evenly spaced: each s_k within h/4 of s_0 + k h, h = (s_{m-1} -
// s_0) / (m - 1) > 0, with 1/h finite in T (*inv_h) and the span s_{m-1} - s_0 finite in T. The
// rule under which e = floor((x - s_0)/h + 1/2), clamped to 0..m, is k(x) or k(x) - 1 (the grid's
// deviation, <= 1/4, and the rounding of e in T, ~1e-6 per unit, stay below 1/2), so that one
// compare x > s_e settles k(x) (kernels_impl.h, kernels_avx512.cpp). The span check keeps x - s_0
// (computed in T) finite for every x up to s_{m-1}: an x whose x - s_0 overflows to +inf then
// lies right of the whole grid, where the clamped index m is right.
template <typename T>
inline bool evenly_spaced(const T* s, int64_t m, T* inv_h) {
  if (m < 2) return false;
  const double s0 = s[0], span = double(s[m - 1]) - s0, h = span / double(m - 1);
  *inv_h = static_cast<T>(1.0 / h);
  if (!(h > 0.0) || !std::isfinite(h) || !std::isfinite(*inv_h)) return false;
  if (!(span <= static_cast<double>(std::numeric_limits<T>::max()))) return false;
  for (int64_t k = 1; k < m - 1; ++k)
    if (!(std::fabs(double(s[k]) - (s0 + double(k) * h)) <= 0.25 * h)) return false;
  return true;
}

struct KernelSet {
  const char* isa = nullptr;
  int lanes[2] = {0, 0};  // vector lanes for float, double
  bool cols_transposed = false;  // float has the 8 x 8 tile kernels (KernelArgs::transposed)
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
