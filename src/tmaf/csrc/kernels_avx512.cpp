// Banded TMAF kernels for the avx512 instruction set: the generic kernels of kernels_impl.h,
// and, for float32 calls with channels outer and m <= 31, kernels written with AVX-512
// intrinsics, per vector of 16 floats x (one channel's breakpoints s_k, levels l_k):
//  - interval: m compares into mask registers; k(x) = #{s_k < x} counted by masked integer
//    subtracts (idx - (-1) where x > s_k);
//  - level: the term's m+1 levels sit in one register (two for m >= 16) and alpha(x) = l[k(x)]
//    is one vpermps (vpermt2ps), so another per-interval table costs one permute and one add;
//  - level gradient: p = g * x added into accumulator k by one masked add per interval, its mask
//    one kandn of two compare masks (x > s_{k-1} and not x > s_k).
// Diagonal backward: 4m + 12 operations per 16 floats (m compares, m kandn, m+1 masked adds, m
// counts, 1 permute, 2 multiplies, the NaN and infinity masks, 2 loads, 1 store).
// Forward, channels outer, evenly spaced breakpoints (each s_k within h/4 of s_0 + k h, as in
// DEFAULT_BREAKPOINTS): the index is computed, not counted (UniformIndex: 8 operations per 16
// floats for any m <= 31), so the diagonal forward is 13 operations (the continuous form 15)
// against the compare chain's 2m + 3, and each term of a band 11 against 2m + 4.
// Banded (1 <= b <= 3) in one pass: each output (input-gradient) row chunk is written once and
// the 2b+1 rows it needs are read in the same loop; the backward counts x_j's interval once for
// all 2b+1 terms: m compares, m kandn, (2b+1)(m+1) masked adds, 2b+1 permutes per 16 floats.
// Channels innermost, diagonal backward: per-lane tables and accumulators in registers over
// tiles of 4 rows (bwd_cols_diag below).
// Semantics are those of kernels_impl.h, non-finite inputs included. Everything else runs the
// generic kernels: double, b > 3, m > 31, the continuous form's banded kernels, the forwards on
// grids that are not evenly spaced and the other channels-innermost kernels, where a counted
// index and a permute measured slower on this CPU than the generic select chains. (The
// backward keeps its compares: their masks are the level-gradient masks; an index followed by
// m+1 integer compares measured slower, 18 cycles per 16 floats against 14 in llvm-mca.)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
// Markers for a static throughput check of the inner loops (scripts/mca_kernels.sh builds this
// file with -DTMAF_MCA and runs llvm-mca on the marked regions); empty in the library.
#ifdef TMAF_MCA
#define TMAF_MCA_BEGIN(name) asm volatile("# LLVM-MCA-BEGIN " name)
#define TMAF_MCA_END(name) asm volatile("# LLVM-MCA-END " name)
#else
#define TMAF_MCA_BEGIN(name)
#define TMAF_MCA_END(name)
#endif
#define TMAF_ISA_NS isa_avx512
#define TMAF_VBYTES 64
#define TMAF_X86_GATHER  // vgatherdps / vgatherqpd for the per-lane table lookups
#include "kernels_impl.h"


namespace tmaf_native {
namespace isa_avx512 {

constexpr int kDiagMaxM = 31;     // m + 1 levels in two registers
// The specialised kernels take float calls with at most kDiagMaxM breakpoints.
static inline bool diag_covers(const KernelArgs& A) { return A.b == 0 && A.m <= kDiagMaxM; }

static inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

// How a level is looked up: the interval index is counted and the term's m+1 levels (one
// register, two for m >= 16) are permuted by it. step() sees each compare mask x > s_k in
// turn, level() gives alpha(x).
template <int MT>
struct PermutedLevels {
  __m512 lo, hi;
  int64_t m;
  typedef __m512i State;
  State start() const { return _mm512_setzero_si512(); }
  State step(State idx, __mmask16 gt, int64_t) const {
    return _mm512_mask_sub_epi32(idx, gt, idx, _mm512_set1_epi32(-1));
  }
  __m512 level(State idx) const {
    if ((MT > 0 ? MT : m) < 16) return _mm512_permutexvar_ps(idx, lo);
    return _mm512_permutex2var_ps(lo, idx, hi);
  }
};

template <int MT, class LK>
static inline __m512 level_of(__m512 x, const __m512* bpv, const LK& lk, int64_t m) {
  typename LK::State st = lk.start();
#pragma GCC unroll 32
  for (int64_t k = 0; k < (MT > 0 ? MT : m); ++k) st = lk.step(st, _mm512_cmp_ps_mask(x, bpv[k], _CMP_GT_OQ), k);
  return lk.level(st);
}

// The interval index k(x) = #{s_k < x} (NaN: 0), m compares counted by masked subtracts.
template <int MT>
static inline __m512i level_index(__m512 x, const __m512* bpv, int64_t m) {
  __m512i idx = _mm512_setzero_si512();
#pragma GCC unroll 32
  for (int64_t k = 0; k < (MT > 0 ? MT : m); ++k)
    idx = _mm512_mask_sub_epi32(idx, _mm512_cmp_ps_mask(x, bpv[k], _CMP_GT_OQ), idx, _mm512_set1_epi32(-1));
  return idx;
}

// alpha * x, +0 where alpha is 0 and x is not NaN (so 0 * inf is +0 and a ReLU start is exact).
static inline __m512 term(__m512 a, __m512 x) {
  const __mmask16 zero = _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(x, x, _CMP_ORD_Q), a,
                                                 _mm512_setzero_ps(), _CMP_EQ_OQ);
  return _mm512_maskz_mul_ps(_knot_mask16(zero), a, x);
}

// acc[k] += p where x lies in interval k (x > s_{k-1} and not x > s_k); with AFF (the
// continuous form) also acc[m+1+k] += g there, the intercept sums; returns alpha(x).
template <int MT, bool AFF, class LK>
static inline __m512 accumulate(__m512 x, __m512 p, __m512 g, const __m512* bpv, const LK& lk, __m512* acc,
                                int64_t m) {
  typename LK::State st = lk.start();
  const int64_t mm = MT > 0 ? MT : m;
  __mmask16 prev = 0xffff;  // x > s_{-1} = -inf: every lane (NaN included)
#pragma GCC unroll 32
  for (int64_t k = 0; k < mm; ++k) {
    const __mmask16 gt = _mm512_cmp_ps_mask(x, bpv[k], _CMP_GT_OQ), in = _kandn_mask16(gt, prev);
    acc[k] = _mm512_mask_add_ps(acc[k], in, acc[k], p);
    if constexpr (AFF) acc[mm + 1 + k] = _mm512_mask_add_ps(acc[mm + 1 + k], in, acc[mm + 1 + k], g);
    st = lk.step(st, gt, k);
    prev = gt;
  }
  acc[mm] = _mm512_mask_add_ps(acc[mm], prev, acc[mm], p);
  if constexpr (AFF) acc[2 * mm + 1] = _mm512_mask_add_ps(acc[2 * mm + 1], prev, acc[2 * mm + 1], g);
  return lk.level(st);
}

// One backward vector: accumulates the level gradient, returns alpha(x) * g. The zero-level
// rule (a term with level 0 adds +0, also at x = +-inf where g * x is not finite) needs alpha
// before the product: the rare vector with an infinite input takes a second pass.
template <int MT, bool AFF, class LK>
static inline __m512 bwd_vector(__m512 x, __m512 g, const __m512* bpv, const LK& lk, __m512* acc, int64_t m) {
  const __mmask16 inf = _mm512_fpclass_ps_mask(x, 0x18);  // +inf, -inf
  if (__builtin_expect(inf != 0, 0)) {
    const __m512 a = level_of<MT>(x, bpv, lk, m);
    const __mmask16 drop = _mm512_mask_cmp_ps_mask(inf, a, _mm512_setzero_ps(), _CMP_EQ_OQ);
    accumulate<MT, AFF>(x, _mm512_maskz_mul_ps(_knot_mask16(drop), g, x), g, bpv, lk, acc, m);
    return _mm512_mul_ps(a, g);
  }
  return _mm512_mul_ps(accumulate<MT, AFF>(x, _mm512_mul_ps(g, x), g, bpv, lk, acc, m), g);
}

// ------------------------------------------------- channels outer (rows layout), b = 0

struct RowsTask {
  int64_t c, s0, s1, o0, o1;
};

static inline RowsTask rows_task(const KernelArgs& A, int64_t t) {
  const int64_t sb = t % A.n_sb, rest = t / A.n_sb;
  const int64_t o0 = (rest / A.C) * A.oblock;
  return {rest % A.C, sb * A.sblock, std::min(A.inner, sb * A.sblock + A.sblock), o0,
          std::min(A.outer, o0 + A.oblock)};
}

// A term's m+1 levels in registers.
template <int MT>
static inline PermutedLevels<MT> level_table(const float* lv, int64_t m) {
  return {_mm512_maskz_loadu_ps(tail_mask(m + 1), lv),
          m + 1 > 16 ? _mm512_maskz_loadu_ps(tail_mask(m + 1 - 16), lv + 16) : _mm512_setzero_ps(), m};
}

// The channel's tables: broadcast breakpoints, levels in registers.
template <int MT>
static inline PermutedLevels<MT> rows_tables(const float* bp, const float* lv, int64_t m, __m512* bpv) {
  for (int64_t k = 0; k < m; ++k) bpv[k] = _mm512_set1_ps(bp[k]);
  return level_table<MT>(lv, m);
}

// ------------------------------------------- evenly spaced breakpoints: the index at once
// Where a channel's breakpoints are evenly spaced -- each s_k within h/4 of s_0 + k h, with
// h = (s_{m-1} - s_0) / (m - 1), as in DEFAULT_BREAKPOINTS and any linspace grid -- the interval
// index needs no chain of m compares: e = floor((x - s_0) / h + 1/2), clamped to 0..m, is k(x)
// or k(x) - 1 (the grid's deviation, <= 1/4, and the float rounding of e, ~1e-6 per unit, stay
// below 1/2), and one compare with s_e settles which (s_e by a permute of the breakpoints;
// s_m = NaN, which no x exceeds). That compare is the generic kernels' own (x > s_k in float),
// so ties, infinities and NaN (index 0) land in the same intervals. 8 operations per 16 floats
// for any m <= 31 (sub, fma, max, min, convert, permute, compare, masked subtract).
template <int MT>
struct UniformIndex {
  __m512 s0, inv_h, top, lo, hi;  // lo, hi: s_0 .. s_{m-1}, then NaN
  int64_t m;
  __m512i operator()(__m512 x) const {
    __m512 u = _mm512_fmadd_ps(_mm512_sub_ps(x, s0), inv_h, _mm512_set1_ps(0.5f));
    u = _mm512_min_ps(_mm512_max_ps(u, _mm512_setzero_ps()), top);  // max(NaN, 0) is 0
    const __m512i e = _mm512_cvttps_epi32(u);
    const __m512 se = (MT > 0 ? MT : m) < 16 ? _mm512_permutexvar_ps(e, lo) : _mm512_permutex2var_ps(lo, e, hi);
    return _mm512_mask_sub_epi32(e, _mm512_cmp_ps_mask(x, se, _CMP_GT_OQ), e, _mm512_set1_epi32(-1));
  }
};

// The index of breakpoints s (m of them) in *u; false where they are not evenly spaced (or m is
// outside 2..kDiagMaxM): then the compare chain.
template <int MT>
static inline bool uniform_index(const float* s, int64_t m, UniformIndex<MT>* u) {
  float inv_h;
  if (m > kDiagMaxM || !evenly_spaced(s, m, &inv_h)) return false;
  alignas(64) float tab[32];
  for (int k = 0; k < 32; ++k) tab[k] = k < m ? s[k] : std::numeric_limits<float>::quiet_NaN();
  *u = {_mm512_set1_ps(s[0]), _mm512_set1_ps(inv_h), _mm512_set1_ps(float(m)), _mm512_load_ps(tab),
        _mm512_load_ps(tab + 16), m};
  return true;
}

// The diagonal forward on evenly spaced breakpoints, channels outer: index, one permute for the
// level (AFF: one more for the intercept), the zero-level rule: 13 operations per 16 floats
// (AFF 15) for any m, against the compare chain's 2m + 3. Other grids: the generic kernel.
template <int MT, bool AFF>
void fwd_rows_diag(const KernelArgs& A, int64_t t0, int64_t t1) {
  const int64_t m = MT > 0 ? MT : A.m, C = A.C, inner = A.inner;
  const float* x = static_cast<const float*>(A.x);
  float* out = static_cast<float*>(A.out);
  const float* bp = static_cast<const float*>(A.bp);
  for (int64_t t = t0; t < t1; ++t) {
    const RowsTask T = rows_task(A, t);
    UniformIndex<MT> index;
    if (!uniform_index<MT>(bp + T.c * m, m, &index)) {
      fwd_rows<float, MT, AFF>(A, t, t + 1);
      continue;
    }
    const PermutedLevels<MT> lk = level_table<MT>(static_cast<const float*>(A.lv) + T.c * (m + 1), m);
    const PermutedLevels<MT> ck = AFF ? level_table<MT>(static_cast<const float*>(A.ic) + T.c * (m + 1), m) : lk;
    for (int64_t o = T.o0; o < T.o1; ++o) {
      const int64_t row = (o * C + T.c) * inner;
      for (int64_t s = T.s0; s < T.s1; s += 16) {
        if constexpr (AFF) TMAF_MCA_BEGIN("fwd_rows_diag_uniform_continuous");
        else TMAF_MCA_BEGIN("fwd_rows_diag_uniform");
        _mm_prefetch(reinterpret_cast<const char*>(x + row + s) + kPrefetchBytes, _MM_HINT_T0);
        const __mmask16 lanes = tail_mask(T.s1 - s);
        const __m512 xv = _mm512_maskz_loadu_ps(lanes, x + row + s);
        const __m512i k = index(xv);
        __m512 y = term(lk.level(k), xv);
        if constexpr (AFF) y = _mm512_add_ps(y, ck.level(k));
        _mm512_mask_storeu_ps(out + row + s, lanes, y);
        if constexpr (AFF) TMAF_MCA_END("fwd_rows_diag_uniform_continuous");
        else TMAF_MCA_END("fwd_rows_diag_uniform");
      }
    }
  }
}

// AFF: the continuous form (the intercept sums after the level sums of the task's slot).
template <int MT, bool AFF = false>
void bwd_rows_diag(const KernelArgs& A, int64_t t0, int64_t t1) {
  if (!diag_covers(A)) return bwd_rows<float, MT, AFF>(A, t0, t1);
  const int64_t m = MT > 0 ? MT : A.m, C = A.C, inner = A.inner, P = (AFF ? 2 : 1) * (m + 1);
  const float* x = static_cast<const float*>(A.x);
  const float* g = static_cast<const float*>(A.g);
  float* gx = static_cast<float*>(A.gx);
  __m512 bpv[kDiagMaxM], acc[(AFF ? 2 : 1) * (kDiagMaxM + 1)];
  for (int64_t t = t0; t < t1; ++t) {
    const RowsTask T = rows_task(A, t);
    const auto lk = rows_tables<MT>(static_cast<const float*>(A.bp) + T.c * m,
                                    static_cast<const float*>(A.lv) + T.c * (m + 1), m, bpv);
    for (int64_t k = 0; k < P; ++k) acc[k] = _mm512_setzero_ps();
    __mmask16 nan = 0;
    for (int64_t o = T.o0; o < T.o1; ++o) {
      const int64_t row = (o * C + T.c) * inner;
      for (int64_t s = T.s0; s < T.s1; s += 16) {
        if constexpr (AFF) TMAF_MCA_BEGIN("bwd_rows_diag_continuous");
        else TMAF_MCA_BEGIN("bwd_rows_diag");
        const __mmask16 k = tail_mask(T.s1 - s);
        const __m512 xv = _mm512_maskz_loadu_ps(k, x + row + s);
        const __m512 v = bwd_vector<MT, AFF>(xv, _mm512_maskz_loadu_ps(k, g + row + s), bpv, lk, acc, m);
        const __mmask16 bad = _mm512_cmp_ps_mask(xv, xv, _CMP_UNORD_Q);
        nan = _kor_mask16(nan, bad);
        _mm512_mask_storeu_ps(gx + row + s, k, _mm512_mask_mov_ps(v, bad, xv));
        if constexpr (AFF) TMAF_MCA_END("bwd_rows_diag_continuous");
        else TMAF_MCA_END("bwd_rows_diag");
      }
    }
    float* part = static_cast<float*>(A.partial) + t * P;
    for (int64_t k = 0; k < P; ++k)
      part[k] = nan ? std::numeric_limits<float>::quiet_NaN() : _mm512_reduce_add_ps(acc[k]);
  }
}

// The continuous form's channels-outer forward: diagonal here, banded in the generic kernel.
template <int MT>
void fwd_rows_cont(const KernelArgs& A, int64_t t0, int64_t t1) {
  if (A.b != 0 || A.m > kDiagMaxM) return fwd_rows<float, MT, true>(A, t0, t1);
  return fwd_rows_diag<MT, true>(A, t0, t1);
}

// The continuous form's channels-outer backward: diagonal here, banded in the generic kernel.
template <int MT>
void bwd_rows_cont(const KernelArgs& A, int64_t t0, int64_t t1) {
  if (A.b != 0) return bwd_rows<float, MT, true>(A, t0, t1);
  return bwd_rows_diag<MT, true>(A, t0, t1);
}

// ------------------------------------------- channels outer (rows layout), b > 0, one pass
// Each output (input-gradient) row chunk is read and written once; the 2b+1 rows it needs are
// read in the same chunk loop, each with its own level register(s). WT = 2b+1 for the tasks with
// a full band (the tables' loops unroll), 0 for the channels at the edges.

constexpr int kBandMaxW = 7;  // b <= 3; beyond, the generic kernels
static inline bool band_covers(const KernelArgs& A) { return A.b > 0 && 2 * A.b + 1 <= kBandMaxW && A.m <= kDiagMaxM; }

// The rows of one output channel chunk by chunk, y = sum over q of term_q(x of channel i + dlo + q);
// level(q, x) is alpha of term q.
template <int WT, class Level>
static inline void fwd_rows_band_rows(const KernelArgs& A, const RowsTask& T, int64_t dlo, int64_t nd,
                                      const Level& level) {
  const int64_t C = A.C, inner = A.inner;
  const float* x = static_cast<const float*>(A.x);
  float* out = static_cast<float*>(A.out);
  for (int64_t o = T.o0; o < T.o1; ++o) {
    const float* xr = x + (o * C + T.c + dlo) * inner;  // row of channel i + dlo; + q * inner
    float* yr = out + (o * C + T.c) * inner;
    for (int64_t s = T.s0; s < T.s1; s += 16) {
      const __mmask16 k = tail_mask(T.s1 - s);
      __m512 y = _mm512_setzero_ps();
#pragma GCC unroll 8
      for (int64_t q = 0; q < (WT > 0 ? WT : nd); ++q) {
        const __m512 xv = _mm512_maskz_loadu_ps(k, xr + q * inner + s);
        const __m512 tv = term(level(q, xv), xv);
        y = q == 0 ? tv : _mm512_add_ps(y, tv);
      }
      _mm512_mask_storeu_ps(yr + s, k, y);
    }
  }
}

// Each term's level by the uniform index where every input channel's grid is evenly spaced
// (8 operations a term), else by its m compares.
template <int MT, int WT>
static void fwd_rows_band_task(const KernelArgs& A, const RowsTask& T, int64_t dlo, int64_t dhi) {
  const int64_t m = MT > 0 ? MT : A.m, b = A.b, W = 2 * b + 1;
  const int64_t nd = WT > 0 ? WT : dhi - dlo + 1;
  const float* bp = static_cast<const float*>(A.bp);
  __m512 bpv[kBandMaxW][kDiagMaxM];
  PermutedLevels<MT> lk[kBandMaxW];
  UniformIndex<MT> index[kBandMaxW];
  bool uniform = true;
  for (int64_t q = 0; q < nd; ++q) {
    const int64_t d = dlo + q;
    lk[q] = level_table<MT>(static_cast<const float*>(A.lv) + (T.c * W + d + b) * (m + 1), m);
    uniform = uniform && uniform_index<MT>(bp + (T.c + d) * m, m, &index[q]);
  }
  if (uniform) {
    fwd_rows_band_rows<WT>(A, T, dlo, nd, [&](int64_t q, __m512 xv) { return lk[q].level(index[q](xv)); });
    return;
  }
  for (int64_t q = 0; q < nd; ++q)
    for (int64_t k = 0; k < m; ++k) bpv[q][k] = _mm512_set1_ps(bp[(T.c + dlo + q) * m + k]);
  fwd_rows_band_rows<WT>(A, T, dlo, nd, [&](int64_t q, __m512 xv) { return level_of<MT>(xv, bpv[q], lk[q], m); });
}

template <int MT, int WT>
static void bwd_rows_band_task(const KernelArgs& A, const RowsTask& T, int64_t t, int64_t dlo, int64_t dhi) {
  const int64_t m = MT > 0 ? MT : A.m, C = A.C, inner = A.inner, b = A.b, W = 2 * b + 1;
  const int64_t nd = WT > 0 ? WT : dhi - dlo + 1, j = T.c;
  const float* x = static_cast<const float*>(A.x);
  const float* g = static_cast<const float*>(A.g);
  float* gx = static_cast<float*>(A.gx);
  __m512 bpv[kDiagMaxM], acc[kBandMaxW][kDiagMaxM + 1];
  PermutedLevels<MT> lk[kBandMaxW];  // level of the term (i = j - d, d)
  for (int64_t k = 0; k < m; ++k) bpv[k] = _mm512_set1_ps(static_cast<const float*>(A.bp)[j * m + k]);
  for (int64_t q = 0; q < nd; ++q) {
    const int64_t d = dlo + q;
    lk[q] = level_table<MT>(static_cast<const float*>(A.lv) + ((j - d) * W + d + b) * (m + 1), m);
    for (int64_t k = 0; k <= m; ++k) acc[q][k] = _mm512_setzero_ps();
  }
  const __m512i minus1 = _mm512_set1_epi32(-1);
  __mmask16 nan = 0;
  for (int64_t o = T.o0; o < T.o1; ++o) {
    const float* xr = x + (o * C + j) * inner;
    const float* gr = g + (o * C + j - dlo) * inner;  // row of channel j - d: gr - q * inner
    float* gxr = gx + (o * C + j) * inner;
    for (int64_t s = T.s0; s < T.s1; s += 16) {
      const __mmask16 lanes = tail_mask(T.s1 - s);
      const __m512 xv = _mm512_maskz_loadu_ps(lanes, xr + s);
      __m512 gv[kBandMaxW], p[kBandMaxW];
      for (int64_t q = 0; q < nd; ++q) {
        gv[q] = _mm512_maskz_loadu_ps(lanes, gr - q * inner + s);
        p[q] = _mm512_mul_ps(gv[q], xv);
      }
      const __mmask16 inf = _mm512_fpclass_ps_mask(xv, 0x18);
      if (__builtin_expect(inf != 0, 0)) {  // zero-level rule: +0 where the term's level is 0
        const __m512i idx0 = level_index<MT>(xv, bpv, m);
        for (int64_t q = 0; q < nd; ++q) {
          const __mmask16 drop = _mm512_mask_cmp_ps_mask(inf, lk[q].level(idx0), _mm512_setzero_ps(), _CMP_EQ_OQ);
          p[q] = _mm512_maskz_mov_ps(_knot_mask16(drop), p[q]);
        }
      }
      __m512i idx = _mm512_setzero_si512();
      __mmask16 prev = 0xffff;
#pragma GCC unroll 32
      for (int64_t k = 0; k < m; ++k) {
        const __mmask16 gt = _mm512_cmp_ps_mask(xv, bpv[k], _CMP_GT_OQ), in = _kandn_mask16(gt, prev);
        for (int64_t q = 0; q < nd; ++q) acc[q][k] = _mm512_mask_add_ps(acc[q][k], in, acc[q][k], p[q]);
        idx = _mm512_mask_sub_epi32(idx, gt, idx, minus1);
        prev = gt;
      }
      __m512 v = _mm512_setzero_ps();
      for (int64_t q = 0; q < nd; ++q) {
        acc[q][m] = _mm512_mask_add_ps(acc[q][m], prev, acc[q][m], p[q]);
        const __m512 tv = _mm512_mul_ps(lk[q].level(idx), gv[q]);
        v = q == 0 ? tv : _mm512_add_ps(v, tv);
      }
      const __mmask16 bad = _mm512_cmp_ps_mask(xv, xv, _CMP_UNORD_Q);
      nan = _kor_mask16(nan, bad);
      _mm512_mask_storeu_ps(gxr + s, lanes, _mm512_mask_mov_ps(v, bad, xv));
    }
  }
  for (int64_t q = 0; q < nd; ++q) {
    float* part = static_cast<float*>(A.partial) + (t * W + dlo + q + b) * (m + 1);
    for (int64_t k = 0; k <= m; ++k)
      part[k] = nan ? std::numeric_limits<float>::quiet_NaN() : _mm512_reduce_add_ps(acc[q][k]);
  }
}

// ------------------------------------------ channels innermost (columns layout), b = 0
// One task is a block of rows x a block of channels (ops.cpp). The rows are taken in tiles of
// kColsTile; inside a tile, per vector of 16 channels, the tile's rows are walked (a stride of C
// floats, all within L1: kColsTile rows of the block) with everything per lane in registers: the
// m breakpoints and m+1 levels of the 16 channels and the m+1 level-gradient accumulators, read
// from and written to the task's partial sums once per tile (not once per element, as the
// generic kernel does). Per 16 floats: m compares into masks, m masked blends (the level),
// m - 1 kandn and m+1 masked adds (the level gradient), 2 multiplies, the NaN and infinity
// masks, 2 loads and 1 store.

constexpr int64_t kColsTile = 4;

// One row's vector of 16 channels with the tables (bpv, lvv) and accumulators in registers;
// returns x's NaN lanes.
template <int MT>
static inline __mmask16 bwd_cols_diag_row(const float* xp, const float* gp, float* gxp, __mmask16 lanes,
                                          const __m512* bpv, const __m512* lvv, __m512* acc, int64_t m) {
  TMAF_MCA_BEGIN("bwd_cols_diag");
  const __m512 xv = _mm512_maskz_loadu_ps(lanes, xp);
  const __m512 gv = _mm512_maskz_loadu_ps(lanes, gp);
  __m512 a = lvv[0];
  __mmask16 gt[kDiagMaxM];
#pragma GCC unroll 32
  for (int64_t k = 0; k < (MT > 0 ? MT : m); ++k) {
    gt[k] = _mm512_cmp_ps_mask(xv, bpv[k], _CMP_GT_OQ);
    a = _mm512_mask_mov_ps(a, gt[k], lvv[k + 1]);
  }
  // g * x, +0 where the level is 0 and x is infinite (the zero-level rule)
  const __mmask16 inf = _mm512_fpclass_ps_mask(xv, 0x18);
  const __mmask16 drop = _mm512_mask_cmp_ps_mask(inf, a, _mm512_setzero_ps(), _CMP_EQ_OQ);
  const __m512 p = _mm512_maskz_mul_ps(_knot_mask16(drop), gv, xv);
  acc[0] = _mm512_mask_add_ps(acc[0], _knot_mask16(gt[0]), acc[0], p);
#pragma GCC unroll 32
  for (int64_t k = 1; k < (MT > 0 ? MT : m); ++k)
    acc[k] = _mm512_mask_add_ps(acc[k], _kandn_mask16(gt[k], gt[k - 1]), acc[k], p);
  const int64_t mm = MT > 0 ? MT : m;
  acc[mm] = _mm512_mask_add_ps(acc[mm], gt[mm - 1], acc[mm], p);
  const __mmask16 bad = _mm512_cmp_ps_mask(xv, xv, _CMP_UNORD_Q);
  _mm512_mask_storeu_ps(gxp, lanes, _mm512_mask_mov_ps(_mm512_mul_ps(a, gv), bad, xv));
  TMAF_MCA_END("bwd_cols_diag");
  return bad;
}

// The next tile's row segments of channels c0..c1: short runs (c1 - c0 floats a row) the
// hardware prefetchers pick up late.
static inline void prefetch_cols_tile(const KernelArgs& A, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const float* x = static_cast<const float*>(A.x);
  const float* g = static_cast<const float*>(A.g);
  float* gx = static_cast<float*>(A.gx);
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; c += 16) {
      _mm_prefetch(reinterpret_cast<const char*>(x + r * A.C + c), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(g + r * A.C + c), _MM_HINT_T0);
      _m_prefetchw(gx + r * A.C + c);
    }
}

// Rows rt..rt1 of the vector of channels j0.. (table tv, partial sums pv): tables and
// accumulators loaded once for the tile; returns the NaN lanes.
template <int MT>
static __mmask16 bwd_cols_diag_tile(const KernelArgs& A, int64_t rt, int64_t rt1, int64_t j0, int64_t c1,
                                    const float* tv, float* pv) {
  const int64_t m = MT > 0 ? MT : A.m, C = A.C;
  const __mmask16 lanes = tail_mask(c1 - j0);
  __m512 bpv[kDiagMaxM], lvv[kDiagMaxM + 1], acc[kDiagMaxM + 1];
#pragma GCC unroll 32
  for (int64_t k = 0; k < m; ++k) bpv[k] = _mm512_loadu_ps(tv + k * 16);
#pragma GCC unroll 32
  for (int64_t k = 0; k <= m; ++k) {
    lvv[k] = _mm512_loadu_ps(tv + (m + k) * 16);
    acc[k] = _mm512_loadu_ps(pv + k * 16);
  }
  __mmask16 bad = 0;
  for (int64_t r = rt; r < rt1; ++r) {
    const int64_t at = r * C + j0;
    bad = _kor_mask16(bad, bwd_cols_diag_row<MT>(static_cast<const float*>(A.x) + at,
                                                 static_cast<const float*>(A.g) + at,
                                                 static_cast<float*>(A.gx) + at, lanes, bpv, lvv, acc, m));
  }
#pragma GCC unroll 32
  for (int64_t k = 0; k <= m; ++k) _mm512_storeu_ps(pv + k * 16, acc[k]);
  return bad;
}

template <int MT>
void bwd_cols_diag(const KernelArgs& A, int64_t t0, int64_t t1) {
  if (!diag_covers(A)) return bwd_cols<float, MT, false>(A, t0, t1);
  constexpr int L = 16;
  const int64_t m = MT > 0 ? MT : A.m, C = A.C, m1 = m + 1, blk = m + m1, n_vec = (C + L - 1) / L;
  const float* tab = static_cast<const float*>(A.lv);  // (n_vec, m + m1, L)
  float* partial = static_cast<float*>(A.partial);      // (n_rb, n_vec, 1, m1, L)
  __mmask16 nan[kMaxColsBlock / L];
  const __m512 qnan = _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN());
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t rb = t / A.n_cb, cb = t % A.n_cb;
    const int64_t r0 = rb * A.rblock, r1 = std::min(A.outer, r0 + A.rblock);
    const int64_t c0 = cb * A.cblock, c1 = std::min(C, c0 + A.cblock), nv = (c1 - c0 + L - 1) / L;
    float* part = partial + (rb * n_vec + c0 / L) * m1 * L;  // this task's vectors
    std::fill(part, part + nv * m1 * L, 0.0f);
    std::fill(nan, nan + nv, __mmask16(0));
    for (int64_t rt = r0; rt < r1; rt += kColsTile) {
      const int64_t rt1 = std::min(r1, rt + kColsTile);
      prefetch_cols_tile(A, rt1, std::min(r1, rt1 + kColsTile), c0, c1);
      for (int64_t v = 0; v < nv; ++v) {
        const int64_t j0 = c0 + v * L;
        nan[v] = _kor_mask16(nan[v], bwd_cols_diag_tile<MT>(A, rt, rt1, j0, c1, tab + (j0 / L) * blk * L,
                                                           part + v * m1 * L));
      }
    }
    for (int64_t v = 0; v < nv; ++v)  // NaN input: every level gradient of its channel is NaN
      if (nan[v])
        for (int64_t k = 0; k <= m; ++k) {
          float* q = part + (v * m1 + k) * L;
          _mm512_storeu_ps(q, _mm512_mask_mov_ps(_mm512_loadu_ps(q), nan[v], qnan));
        }
  }
}

template <int MT>
void fwd_rows_band(const KernelArgs& A, int64_t t0, int64_t t1) {
  if (A.b == 0 && A.m <= kDiagMaxM) return fwd_rows_diag<MT, false>(A, t0, t1);
  if (!band_covers(A)) return fwd_rows<float, MT, false>(A, t0, t1);  // the generic kernel
  const int64_t b = A.b;
  for (int64_t t = t0; t < t1; ++t) {
    const RowsTask T = rows_task(A, t);
    const int64_t dlo = std::max(-b, -T.c), dhi = std::min(b, A.C - 1 - T.c);
    if (b == 1 && dhi - dlo == 2) fwd_rows_band_task<MT, 3>(A, T, dlo, dhi);
    else fwd_rows_band_task<MT, 0>(A, T, dlo, dhi);
  }
}

template <int MT>
void bwd_rows_band(const KernelArgs& A, int64_t t0, int64_t t1) {
  if (!band_covers(A)) return bwd_rows_diag<MT>(A, t0, t1);
  const int64_t b = A.b;
  for (int64_t t = t0; t < t1; ++t) {
    const RowsTask T = rows_task(A, t);
    const int64_t dlo = std::max(-b, T.c - (A.C - 1)), dhi = std::min(b, T.c);  // i = j - d in 0..C-1
    if (b == 1 && dhi - dlo == 2) bwd_rows_band_task<MT, 3>(A, T, t, dlo, dhi);
    else bwd_rows_band_task<MT, 0>(A, T, t, dlo, dhi);
  }
}

}  // namespace isa_avx512
}  // namespace tmaf_native

#pragma GCC pop_options  // what follows runs on any CPU
#include "kernels_fill.h"

namespace tmaf_native {
namespace isa_avx512 {

template <int MT>
static void fill_specialised_variant(KernelSet* set, int v) {
  set->fwd_rows[0][0][v] = &fwd_rows_band<MT>;  // the jump form, float
  set->bwd_rows[0][0][v] = &bwd_rows_band<MT>;
  set->bwd_cols[0][0][v] = &bwd_cols_diag<MT>;
  set->fwd_rows[1][0][v] = &fwd_rows_cont<MT>;  // the continuous form, float
  set->bwd_rows[1][0][v] = &bwd_rows_cont<MT>;
}

}  // namespace isa_avx512

void fill_kernels_avx512(KernelSet* set) {
  set->isa = "avx512";
  isa_avx512::fill_all(set);  // generic kernels everywhere, then the float32 ones
  isa_avx512::fill_specialised_variant<0>(set, 0);
  isa_avx512::fill_specialised_variant<1>(set, 1);
  isa_avx512::fill_specialised_variant<5>(set, 2);
  isa_avx512::fill_specialised_variant<9>(set, 3);
  isa_avx512::fill_specialised_variant<17>(set, 4);
}
}  // namespace tmaf_native
#endif
