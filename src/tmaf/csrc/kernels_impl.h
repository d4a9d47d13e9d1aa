// Banded TMAF kernels, written once with GCC/Clang vector extensions and compiled once per ISA:
// each kernels_<isa>.cpp defines TMAF_ISA_NS and TMAF_VBYTES (vector width in bytes) and
// includes this file under a `#pragma GCC target`. No torch here: see kernels.h.
//
// Semantics (docs/method.md): interval k(x) = #{s_k < x} (closed on the right), comparisons
// in the compute dtype; alpha(NaN) = NaN; a term whose level is exactly 0 is +0 at any
// non-NaN input (so the ReLU start is bit-exact ReLU, -inf included) and contributes 0 to the
// level gradient; a NaN input makes every level gradient of the terms that read it NaN.
// The level gradient is reduced per task in a fixed order: bit-identical for any thread count.
//
// AFF (the continuous form, docs/method.md section 6): each term is affine on its interval,
// alpha(x) * x + c(x) with c the term's intercept table (read like the levels); the backward
// also sums g per interval (the intercept gradient), stored after the m+1 level sums of a slot.
// A NaN input makes both sums of every term that reads it NaN.

#ifndef TMAF_MCA_BEGIN  // llvm-mca region markers (kernels_avx512.cpp), empty elsewhere
#define TMAF_MCA_BEGIN(name)
#define TMAF_MCA_END(name)
#endif

namespace tmaf_native {
namespace TMAF_ISA_NS {

template <typename T> struct IntOf;
template <> struct IntOf<float> { using type = int32_t; static constexpr uint32_t abs = 0x7fffffffu, inf = 0x7f800000u; };
template <> struct IntOf<double> { using type = int64_t; static constexpr uint64_t abs = 0x7fffffffffffffffull, inf = 0x7ff0000000000000ull; };

constexpr int64_t kPrefetchBytes = 1024;  // software prefetch distance along a stream

template <typename T>
struct Simd {
  typedef T V __attribute__((vector_size(TMAF_VBYTES)));
  typedef typename IntOf<T>::type IS;
  typedef IS I __attribute__((vector_size(TMAF_VBYTES)));
  static constexpr int L = TMAF_VBYTES / sizeof(T);

  static inline V load(const T* p) { V v; __builtin_memcpy(&v, p, sizeof(V)); return v; }
  static inline void store(T* p, V v) { __builtin_memcpy(p, &v, sizeof(V)); }
  static inline V bc(T s) { return V{} + s; }
  static inline V zero() { return V{}; }
  // Selects stay in the floating-point domain (blendvps, not pblendvb: no bypass delay).
  static inline V sel(I m, V a, V b) { return m ? a : b; }
  static inline V keep(I m, V a) { return m ? a : V{}; }        // a where m, else +0
  static inline V drop(I m, V a) { return m ? V{} : a; }        // +0 where m, else a
  static inline I isnan(V x) { return x != x; }
  static inline I isinf(V x) {
    const V ax = (V)((I)x & (IS)IntOf<T>::abs);  // |x|, compared as floating point
    return ax == bc(std::numeric_limits<T>::infinity());
  }
  static inline bool any(I m) {
    for (int l = 0; l < L; ++l) if (m[l]) return true;
    return false;
  }
  static inline T hsum(V v) {  // lanes in index order: the same result on every run
    T s = v[0];
    for (int l = 1; l < L; ++l) s += v[l];
    return s;
  }
  // Lanes start..start+L-1 of a row of n values; lanes outside 0..n-1 read 0.
  static inline V loadw(const T* row, int64_t start, int64_t n) {
    if (start >= 0 && start + L <= n) return load(row + start);
    T buf[L];
    for (int l = 0; l < L; ++l) {
      const int64_t c = start + l;
      buf[l] = (c >= 0 && c < n) ? row[c] : T(0);
    }
    return load(buf);
  }
  static inline void storew(T* row, int64_t start, int64_t n, V v) {
    if (start >= 0 && start + L <= n) { store(row + start, v); return; }
    for (int l = 0; l < L; ++l) {
      const int64_t c = start + l;
      if (c >= 0 && c < n) row[c] = v[l];
    }
  }
};

// Tables are read through accessors: bp(k) is breakpoint k, lv(k) level k, as vectors (a
// broadcast in the rows layout, one load per vector of channels in the columns layout).

// One forward term alpha(x) * x by a chain of compare-and-select: +0 where the level is 0 and
// x is not NaN; NaN where x is NaN.
template <typename T, int MT, class BP, class LV>
static inline typename Simd<T>::V term_of(typename Simd<T>::V x, const BP& bp, const LV& lv, int64_t m_rt) {
  using S = Simd<T>;
  const int64_t m = MT > 0 ? MT : m_rt;
  typename S::V a = lv(0);
#pragma GCC unroll 32
  for (int64_t k = 0; k < m; ++k) a = S::sel(x > bp(k), lv(k + 1), a);
  return S::drop((a == S::zero()) & (x == x), a * x);
}

// One continuous-form term alpha(x) * x + c(x): the level and the intercept selected by the
// same compares; the zero-level rule applies to alpha(x) * x (so -inf on a slope-0 interval
// gives c), NaN stays NaN.
template <typename T, int MT, class BP, class LV, class IC>
static inline typename Simd<T>::V affine_term_of(typename Simd<T>::V x, const BP& bp, const LV& lv,
                                                 const IC& ic, int64_t m_rt) {
  using S = Simd<T>;
  const int64_t m = MT > 0 ? MT : m_rt;
  typename S::V a = lv(0), c = ic(0);
#pragma GCC unroll 32
  for (int64_t k = 0; k < m; ++k) {
    const typename S::I gt = x > bp(k);
    a = S::sel(gt, lv(k + 1), a);
    c = S::sel(gt, ic(k + 1), c);
  }
  return S::drop((a == S::zero()) & (x == x), a * x) + c;
}

// The term of the form AFF: affine_term_of (intercepts ic) or term_of.
template <typename T, int MT, bool AFF, class BP, class LV, class IC>
static inline typename Simd<T>::V form_term(typename Simd<T>::V x, const BP& bp, const LV& lv,
                                            const IC& ic, int64_t m_rt) {
  if constexpr (AFF) return affine_term_of<T, MT>(x, bp, lv, ic, m_rt);
  else return term_of<T, MT>(x, bp, lv, m_rt);
}

// form_term for R vectors at once (R rows of one channel vector in the columns layout): each
// table vector is read once for all R, the selects and the zero-level rule are form_term's.
template <typename T, int MT, bool AFF, int R, class BP, class LV, class IC>
static inline void form_terms(const typename Simd<T>::V* x, typename Simd<T>::V* y, const BP& bp,
                              const LV& lv, const IC& ic, int64_t m_rt) {
  using S = Simd<T>;
  using V = typename S::V;
  const int64_t m = MT > 0 ? MT : m_rt;
  V a[R], c[R];
  const V l0 = lv(0);
  for (int r = 0; r < R; ++r) a[r] = l0;
  if constexpr (AFF) {
    const V c0 = ic(0);
    for (int r = 0; r < R; ++r) c[r] = c0;
  }
#pragma GCC unroll 32
  for (int64_t k = 0; k < m; ++k) {
    const V s = bp(k), l = lv(k + 1);
    if constexpr (AFF) {
      const V ck = ic(k + 1);
      for (int r = 0; r < R; ++r) {
        const typename S::I gt = x[r] > s;
        a[r] = S::sel(gt, l, a[r]);
        c[r] = S::sel(gt, ck, c[r]);
      }
    } else {
      for (int r = 0; r < R; ++r) a[r] = S::sel(x[r] > s, l, a[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    y[r] = S::drop((a[r] == S::zero()) & (x[r] == x[r]), a[r] * x[r]);
    if constexpr (AFF) y[r] += c[r];
  }
}

// Interval masks of x: gt[k] = x > s_k.
template <typename T, int MT, class BP>
static inline void compare_all(typename Simd<T>::V x, const BP& bp, typename Simd<T>::I* gt, int64_t m_rt) {
  const int64_t m = MT > 0 ? MT : m_rt;
#pragma GCC unroll 32
  for (int64_t k = 0; k < m; ++k) gt[k] = x > bp(k);
}

// One backward step for input values x (channel j, interval masks gt) and upstream g (channel
// i = j - d): returns alpha(x) * g (the input-gradient term) and adds g * x into acc(k) of x's
// interval (0 where the level is 0 and x is infinite); with AFF also g into acc(m+1+k).
template <typename T, int MT, bool AFF, class LV, class ACC>
static inline typename Simd<T>::V bwd_step(typename Simd<T>::V x, typename Simd<T>::V g,
                                           const typename Simd<T>::I* gt, const LV& lv, const ACC& acc,
                                           int64_t m_rt) {
  using S = Simd<T>;
  using V = typename S::V;
  const int64_t m = MT > 0 ? MT : m_rt;
  V a = lv(0);
#pragma GCC unroll 32
  for (int64_t k = 0; k < m; ++k) a = S::sel(gt[k], lv(k + 1), a);
  const V p = S::drop((a == S::zero()) & S::isinf(x), g * x);
  acc(0) += S::drop(gt[0], p);
#pragma GCC unroll 32
  for (int64_t k = 1; k < m; ++k) acc(k) += S::keep(gt[k - 1] & ~gt[k], p);
  acc(m) += S::keep(gt[m - 1], p);
  if constexpr (AFF) {
    const int64_t m1 = m + 1;
    acc(m1) += S::drop(gt[0], g);
#pragma GCC unroll 32
    for (int64_t k = 1; k < m; ++k) acc(m1 + k) += S::keep(gt[k - 1] & ~gt[k], g);
    acc(m1 + m) += S::keep(gt[m - 1], g);
  }
  return a * g;
}

// ------------------------------------------------ evenly spaced breakpoints: a computed index
// Where a channel's m breakpoints are evenly spaced (each s_k within h/4 of s_0 + k h, h = (s_{m-1}
// - s_0) / (m-1): DEFAULT_BREAKPOINTS, any linspace grid), e = floor((x - s_0) / h + 1/2) clamped
// to 0..m is k(x) or k(x) - 1 (deviation <= 1/4 plus rounding ~1e-6 < 1/2), and one compare
// with s_e, looked up by a shuffle (s_m = NaN: never exceeded), gives k(x) exactly, by the same
// compare (x > s_k in T) as the chains: ties, infinities and NaN (index 0) land alike. The
// levels (and intercepts) are looked up by the same shuffle: 10 operations per vector for any m
// up to 2L - 1 (two table vectors), against 2m + 3. float with 16 lanes (avx512: the banded terms
// its own kernels leave to these) only: with 8 lanes (avx2) a two-vector shuffle is two permutes
// and a blend, and the forward measured no faster than the compare chain (128x64x32x32, m = 9:
// diagonal 1.03x, tridiagonal 1.19x the chain's time; results/bench/uniform-index); with 4, a
// shuffle with a run-time index is not one instruction.
// (evenly_spaced: kernels.h.)
template <typename T>
struct UniformLookup {
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  static constexpr bool enabled = std::is_same<T, float>::value && S::L >= 16;
  V s0, inv_h, top, half, slo, shi, llo, lhi, clo, chi;
  I index(V x) const {
    V u = (x - s0) * inv_h + half;
    u = u > S::zero() ? u : S::zero();  // NaN -> 0
    u = u < top ? u : top;
    const I e = __builtin_convertvector(u, I);  // truncation: floor of u >= 0
    return e - (I)(x > __builtin_shuffle(slo, shi, e));
  }
  V level(I k) const { return __builtin_shuffle(llo, lhi, k); }
  V intercept(I k) const { return __builtin_shuffle(clo, chi, k); }
};

// The lookup tables of one term (breakpoints s, m+1 levels lv, intercepts ic or nullptr) in *u;
// false where the grid is not evenly spaced or does not fit two vectors (then the chains).
template <typename T>
static inline bool uniform_lookup(const T* s, const T* lv, const T* ic, int64_t m, UniformLookup<T>* u) {
  using S = Simd<T>;
  constexpr int L = S::L;
  if (!UniformLookup<T>::enabled || m + 1 > 2 * L) return false;
  T inv_h;
  if (!evenly_spaced(s, m, &inv_h)) return false;
  T st[2 * L], lt[2 * L], ct[2 * L];
  for (int64_t k = 0; k < 2 * L; ++k) {
    st[k] = k < m ? s[k] : std::numeric_limits<T>::quiet_NaN();
    lt[k] = k <= m ? lv[k] : T(0);
    ct[k] = ic != nullptr && k <= m ? ic[k] : T(0);
  }
  u->s0 = S::bc(s[0]); u->inv_h = S::bc(inv_h); u->top = S::bc(T(m)); u->half = S::bc(T(0.5));
  u->slo = S::load(st); u->shi = S::load(st + L);
  u->llo = S::load(lt); u->lhi = S::load(lt + L);
  u->clo = S::load(ct); u->chi = S::load(ct + L);
  return true;
}

// ---------------------------------------------------------------- rows layout (inner > 1)

template <typename T, int MT, bool AFF>
void fwd_rows(const KernelArgs& A, int64_t t0, int64_t t1) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  const int64_t m = MT > 0 ? MT : A.m, b = A.b, C = A.C, inner = A.inner, W = 2 * b + 1;
  const T* x = static_cast<const T*>(A.x);
  T* out = static_cast<T*>(A.out);
  const T* bp = static_cast<const T*>(A.bp);
  const T* lv = static_cast<const T*>(A.lv);
  const T* ic = static_cast<const T*>(A.ic);
  V bpv[MT > 0 ? MT : kMaxM], lvv[MT > 0 ? MT + 1 : kMaxM + 1], icv[AFF ? (MT > 0 ? MT + 1 : kMaxM + 1) : 1];
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t sb = t % A.n_sb, rest = t / A.n_sb, i = rest % C, ob = rest / C;
    const int64_t s0 = sb * A.sblock, s1 = std::min(inner, s0 + A.sblock);
    const int64_t o0 = ob * A.oblock, o1 = std::min(A.outer, o0 + A.oblock);
    const int64_t dlo = std::max(-b, -i), dhi = std::min(b, C - 1 - i);
    for (int64_t d = dlo; d <= dhi; ++d) {
      const int64_t j = i + d;
      const bool first = d == dlo;
      UniformLookup<T> ul;
      if (UniformLookup<T>::enabled &&
          uniform_lookup<T>(bp + j * m, lv + (i * W + d + b) * (m + 1),
                            AFF ? ic + (i * W + d + b) * (m + 1) : nullptr, m, &ul)) {
        for (int64_t o = o0; o < o1; ++o) {
          const T* xr = x + (o * C + j) * inner;
          T* yr = out + (o * C + i) * inner;
          for (int64_t s = s0; s < s1; s += L) {
            const bool full = s + L <= s1;
            __builtin_prefetch(xr + s + kPrefetchBytes / sizeof(T));
            const V xv = full ? S::load(xr + s) : S::loadw(xr, s, s1);
            const typename S::I k = ul.index(xv);
            const V a = ul.level(k);
            V y = S::drop((a == S::zero()) & (xv == xv), a * xv);
            if constexpr (AFF) y += ul.intercept(k);
            if (!first) y += full ? S::load(yr + s) : S::loadw(yr, s, s1);
            if (full) S::store(yr + s, y);
            else S::storew(yr, s, s1, y);
          }
        }
        continue;
      }
      for (int64_t k = 0; k < m; ++k) bpv[k] = S::bc(bp[j * m + k]);
      for (int64_t k = 0; k <= m; ++k) lvv[k] = S::bc(lv[(i * W + d + b) * (m + 1) + k]);
      if constexpr (AFF)
        for (int64_t k = 0; k <= m; ++k) icv[k] = S::bc(ic[(i * W + d + b) * (m + 1) + k]);
      const auto bpa = [&](int64_t k) { return bpv[k]; };
      const auto lva = [&](int64_t k) { return lvv[k]; };
      const auto ica = [&](int64_t k) { return icv[AFF ? k : 0]; };
      for (int64_t o = o0; o < o1; ++o) {
        const T* xr = x + (o * C + j) * inner;
        T* yr = out + (o * C + i) * inner;
        int64_t s = s0;
        for (; s + L <= s1; s += L) {
          __builtin_prefetch(xr + s + kPrefetchBytes / sizeof(T));
          V y = form_term<T, MT, AFF>(S::load(xr + s), bpa, lva, ica, m);
          if (!first) y += S::load(yr + s);
          S::store(yr + s, y);
        }
        if (s < s1) {
          V y = form_term<T, MT, AFF>(S::loadw(xr, s, s1), bpa, lva, ica, m);
          if (!first) y += S::loadw(yr, s, s1);
          S::storew(yr, s, s1, y);
        }
      }
    }
  }
}

template <typename T, int MT, bool AFF>
void bwd_rows(const KernelArgs& A, int64_t t0, int64_t t1) {
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  constexpr int L = S::L;
  const int64_t m = MT > 0 ? MT : A.m, b = A.b, C = A.C, inner = A.inner, W = 2 * b + 1;
  const int64_t P = AFF ? 2 * (m + 1) : m + 1;  // sums per (task, offset) slot
  const T* x = static_cast<const T*>(A.x);
  const T* g = static_cast<const T*>(A.g);
  T* gx = static_cast<T*>(A.gx);
  T* partial = static_cast<T*>(A.partial);
  const T* bp = static_cast<const T*>(A.bp);
  const T* lv = static_cast<const T*>(A.lv);
  constexpr int64_t kAcc = (AFF ? 2 : 1) * (MT > 0 ? MT + 1 : kMaxM + 1);
  V bpv[MT > 0 ? MT : kMaxM], lvv[MT > 0 ? MT + 1 : kMaxM + 1], acc[kAcc];
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t sb = t % A.n_sb, rest = t / A.n_sb, j = rest % C, ob = rest / C;
    const int64_t s0 = sb * A.sblock, s1 = std::min(inner, s0 + A.sblock);
    const int64_t o0 = ob * A.oblock, o1 = std::min(A.outer, o0 + A.oblock);
    const int64_t dlo = std::max(-b, j - (C - 1)), dhi = std::min(b, j);  // i = j - d in 0..C-1
    for (int64_t k = 0; k < m; ++k) bpv[k] = S::bc(bp[j * m + k]);
    for (int64_t d = dlo; d <= dhi; ++d) {
      const int64_t i = j - d;
      for (int64_t k = 0; k <= m; ++k) lvv[k] = S::bc(lv[(i * W + d + b) * (m + 1) + k]);
      for (int64_t k = 0; k < P; ++k) acc[k] = S::zero();
      I nan = I{};
      const bool first = d == dlo, last = d == dhi;
      const auto bpa = [&](int64_t k) { return bpv[k]; };
      const auto lva = [&](int64_t k) { return lvv[k]; };
      const auto acca = [&](int64_t k) -> V& { return acc[k]; };
      I gt[MT > 0 ? MT : kMaxM];
      for (int64_t o = o0; o < o1; ++o) {
        const T* xr = x + (o * C + j) * inner;
        const T* gr = g + (o * C + i) * inner;
        T* gxr = gx + (o * C + j) * inner;
        int64_t s = s0;
        for (; s + L <= s1; s += L) {
          __builtin_prefetch(xr + s + kPrefetchBytes / sizeof(T));
          __builtin_prefetch(gr + s + kPrefetchBytes / sizeof(T));
          const V xv = S::load(xr + s);
          compare_all<T, MT>(xv, bpa, gt, m);
          V v = bwd_step<T, MT, AFF>(xv, S::load(gr + s), gt, lva, acca, m);
          if (!first) v += S::load(gxr + s);
          const I bad = S::isnan(xv);
          if (last) v = S::sel(bad, xv, v);
          nan |= bad;
          S::store(gxr + s, v);
        }
        if (s < s1) {
          const V xv = S::loadw(xr, s, s1);
          compare_all<T, MT>(xv, bpa, gt, m);
          V v = bwd_step<T, MT, AFF>(xv, S::loadw(gr, s, s1), gt, lva, acca, m);
          if (!first) v += S::loadw(gxr, s, s1);
          const I bad = S::isnan(xv);
          if (last) v = S::sel(bad, xv, v);
          nan |= bad;
          S::storew(gxr, s, s1, v);
        }
      }
      T* part = partial + (t * W + d + b) * P;
      const bool has_nan = S::any(nan);
      for (int64_t k = 0; k < P; ++k)
        part[k] = has_nan ? std::numeric_limits<T>::quiet_NaN() : S::hsum(acc[k]);
    }
  }
}

// ------------------------------------- columns layout, evenly spaced grids: the lane index
// Every lane is another channel, so each lane has its own grid and tables: the interval index
// of each input is computed once (LaneGrid: e = floor((x - s_0)/h + 1/2) clamped to 0..m, one
// gather of s_e, one compare; see evenly_spaced) and every term that reads the input looks its
// level (and intercept) up by one gather at that index. The backward turns the index into the
// m+1 interval masks once for all 2b+1 terms and adds into the task's per-channel partial sums
// (kernels.h), walked in row order: deterministic, no atomics.

#if defined(TMAF_X86_GATHER)
// base[idx[l]] for every lane: one hardware gather.
template <typename T>
static inline typename Simd<T>::V gather(const T* base, typename Simd<T>::I idx) {
  using V = typename Simd<T>::V;
#if TMAF_VBYTES == 64
  if constexpr (std::is_same<T, float>::value) return (V)_mm512_i32gather_ps((__m512i)idx, base, 4);
  else return (V)_mm512_i64gather_pd((__m512i)idx, base, 8);
#else
  if constexpr (std::is_same<T, float>::value) return (V)_mm256_i32gather_ps(base, (__m256i)idx, 4);
  else return (V)_mm256_i64gather_pd(base, (__m256i)idx, 8);
#endif
}
#else
template <typename T>
static inline typename Simd<T>::V gather(const T* base, typename Simd<T>::I idx) {
  typename Simd<T>::V v{};
  for (int l = 0; l < Simd<T>::L; ++l) v[l] = base[idx[l]];
  return v;
}
#endif

// Lane l's table offset: channel c0 + l (clamped into 0..C-1, so every read is inside the
// table) times stride, plus off.
template <typename T>
static inline typename Simd<T>::I lane_offsets(int64_t c0, int64_t C, int64_t stride, int64_t off) {
  using S = Simd<T>;
  typename S::I r{};
  for (int l = 0; l < S::L; ++l) r[l] = std::min(std::max<int64_t>(c0 + l, 0), C - 1) * stride + off;
  return r;
}

// Whether lane l's channel c0 + l lies in 0..C-1.
template <typename T>
static inline typename Simd<T>::I lanes_in(int64_t c0, int64_t C) {
  using S = Simd<T>;
  typename S::I r{};
  for (int l = 0; l < S::L; ++l) r[l] = (c0 + l >= 0 && c0 + l < C) ? -1 : 0;
  return r;
}

// The per-channel grids of KernelArgs::grid and the interval index of a vector of channels.
template <typename T>
struct LaneGrid {
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  const T *s0, *inv_h, *s;  // (C), (C), (C, m+1): breakpoints, then NaN
  int64_t C, m;
  I iota_m1, iota_s;        // l * (m+1), l * (2b+1)(m+1): lane offsets in the tables

  explicit LaneGrid(const KernelArgs& A)
      : s0(static_cast<const T*>(A.grid)), inv_h(s0 + A.C), s(s0 + 2 * A.C), C(A.C), m(A.m) {
    for (int l = 0; l < S::L; ++l) {
      iota_m1[l] = l * (m + 1);
      iota_s[l] = l * (2 * A.b + 1) * (m + 1);
    }
  }
  // k(x) of the lanes' channels j0 .. j0+L-1 (lanes outside 0..C-1: some index in 0..m).
  I index(V x, int64_t j0) const {
    V a, h;
    I base;
    if (j0 >= 0 && j0 + S::L <= C) {
      a = S::load(s0 + j0);
      h = S::load(inv_h + j0);
      base = iota_m1 + (typename S::IS)(j0 * (m + 1));
    } else {
      base = lane_offsets<T>(j0, C, m + 1, 0);
      for (int l = 0; l < S::L; ++l) {
        const int64_t j = std::min(std::max<int64_t>(j0 + l, 0), C - 1);
        a[l] = s0[j];
        h[l] = inv_h[j];
      }
    }
    V u = (x - a) * h + S::bc(T(0.5));
    u = u > S::zero() ? u : S::zero();  // NaN -> 0
    u = u < S::bc(T(m)) ? u : S::bc(T(m));
    const I e = __builtin_convertvector(u, I);  // truncation: floor of u >= 0
    return e - (I)(x > gather<T>(s, base + e));
  }
};

// The term alpha(x) * x (AFF: + c(x)) of lanes whose level-table offsets are `at` (the
// interval index added): +0 where the level is 0 and x is not NaN.
template <typename T, bool AFF>
static inline typename Simd<T>::V lane_term(typename Simd<T>::V x, typename Simd<T>::I at, const T* lv,
                                            const T* ic) {
  using S = Simd<T>;
  const typename S::V a = gather<T>(lv, at);
  typename S::V y = S::drop((a == S::zero()) & (x == x), a * x);
  if constexpr (AFF) y += gather<T>(ic, at);
  return y;
}

// One row of a forward task: the index of every input channel the row's output vectors read,
// c0-b .. up to the last vector's end + b, once (into kb; lanes outside 0..C-1 some index in 0..m),
// then per output vector its 2b+1 terms, one gather each (AFF two).
template <typename T, int MT, bool AFF>
static inline void fwd_cols_uniform_row(const KernelArgs& A, const LaneGrid<T>& grid, const T* xr, T* yr,
                                        int64_t c0, int64_t c1, typename Simd<T>::IS* kb) {
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  constexpr int L = S::L;
  const int64_t b = A.b, C = A.C, W = 2 * b + 1, m1 = A.m + 1, stride = W * m1;
  const T* lv = static_cast<const T*>(A.lv);
  const T* ic = static_cast<const T*>(A.ic);
  const int64_t j_end = c0 + (c1 - c0 + L - 1) / L * L + b;  // the last output vector's lanes, all
  for (int64_t j0 = c0 - b; j0 < j_end; j0 += L) {
    TMAF_MCA_BEGIN("fwd_cols_lane_index");
    const I k = grid.index(S::loadw(xr, j0, C), j0);
    __builtin_memcpy(kb + (j0 - c0 + b), &k, sizeof(I));
    TMAF_MCA_END("fwd_cols_lane_index");
  }
  for (int64_t i0 = c0; i0 < c1; i0 += L) {
    if constexpr (AFF) TMAF_MCA_BEGIN("fwd_cols_lane_terms_continuous"); else TMAF_MCA_BEGIN("fwd_cols_lane_terms");
    const bool inside = i0 + L <= C;
    V y = S::zero();
    for (int64_t d = -b; d <= b; ++d) {
      if (i0 + L - 1 + d < 0 || i0 + d > C - 1) continue;  // no lane reads a channel
      I k;
      __builtin_memcpy(&k, kb + (i0 + d - c0 + b), sizeof(I));
      const bool edge = !inside || i0 + d < 0 || i0 + L + d > C;
      const I at = (edge ? lane_offsets<T>(i0, C, stride, (d + b) * m1)
                         : grid.iota_s + (typename S::IS)(i0 * stride + (d + b) * m1)) + k;
      const V term = lane_term<T, AFF>(S::loadw(xr, i0 + d, C), at, lv, ic);
      y += edge ? S::keep(lanes_in<T>(i0 + d, C), term) : term;
    }
    S::storew(yr, i0, c1, y);
    if constexpr (AFF) TMAF_MCA_END("fwd_cols_lane_terms_continuous"); else TMAF_MCA_END("fwd_cols_lane_terms");
  }
}

template <typename T, int MT, bool AFF>
void fwd_cols_uniform(const KernelArgs& A, int64_t t0, int64_t t1) {
  using S = Simd<T>;
  const T* x = static_cast<const T*>(A.x);
  T* out = static_cast<T*>(A.out);
  const LaneGrid<T> grid(A);
  typename S::IS kb[kMaxColsBlock + 2 * kUniformMaxB + 2 * S::L];
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t rb = t / A.n_cb, cb = t % A.n_cb;
    const int64_t r0 = rb * A.rblock, r1 = std::min(A.outer, r0 + A.rblock);
    const int64_t c0 = cb * A.cblock, c1 = std::min(A.C, c0 + A.cblock);
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t c = c0; c < c1; c += 64 / sizeof(T)) __builtin_prefetch(x + (r + 1) * A.C + c);
      fwd_cols_uniform_row<T, MT, AFF>(A, grid, x + r * A.C, out + r * A.C, c0, c1, kb);
    }
  }
}

// One backward row of input channels j0 .. j0+L-1: x's index once, its m+1 interval masks
// once; per offset d one gather of the level of term (j - d, d), the input gradient, and p = g x
// (AFF: and g) added into the interval's partial sum pd[k] (zero-level rule: +0 where the level
// is 0 and x is infinite). Returns the input gradient (x where x is NaN).
template <typename T, int MT, bool AFF>
static inline typename Simd<T>::V bwd_cols_uniform_vec(const KernelArgs& A, const LaneGrid<T>& grid,
                                                       typename Simd<T>::V xv, const T* gr, int64_t j0,
                                                       T* pv) {
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  constexpr int L = S::L;
  const int64_t m = MT > 0 ? MT : A.m, m1 = m + 1, b = A.b, C = A.C, W = 2 * b + 1, P = AFF ? 2 * m1 : m1;
  const T* lv = static_cast<const T*>(A.lv);
  if constexpr (AFF) TMAF_MCA_BEGIN("bwd_cols_lane_index_continuous"); else TMAF_MCA_BEGIN("bwd_cols_lane_index");
  const I k = grid.index(xv, j0);
  I in[MT > 0 ? MT + 1 : kMaxM + 1];
#pragma GCC unroll 32
  for (int64_t q = 0; q <= m; ++q) in[q] = k == (typename S::IS)q;
  const I inf = S::isinf(xv);
  V gx = S::zero();
  for (int64_t d = -b; d <= b; ++d) {
    if (j0 + L - 1 - d < 0 || j0 - d > C - 1) continue;  // no lane has i = j - d in range
    const bool edge = j0 - d < 0 || j0 - d + L > C;
    const I at = (edge ? lane_offsets<T>(j0 - d, C, W * m1, (d + b) * m1)
                       : grid.iota_s + (typename S::IS)((j0 - d) * W * m1 + (d + b) * m1)) + k;
    V a = gather<T>(lv, at);
    if (edge) a = S::keep(lanes_in<T>(j0 - d, C), a);
    const V g = S::loadw(gr, j0 - d, C);
    gx += a * g;
    const V p = S::drop((a == S::zero()) & inf, g * xv);
    T* pd = pv + (d + b) * P * L;
#pragma GCC unroll 32
    for (int64_t q = 0; q <= m; ++q) {
      S::store(pd + q * L, S::load(pd + q * L) + S::keep(in[q], p));
      if constexpr (AFF) S::store(pd + (m1 + q) * L, S::load(pd + (m1 + q) * L) + S::keep(in[q], g));
    }
  }
  const V res = S::sel(S::isnan(xv), xv, gx);
  if constexpr (AFF) TMAF_MCA_END("bwd_cols_lane_index_continuous"); else TMAF_MCA_END("bwd_cols_lane_index");
  return res;
}

// ------------------------------------ columns layout, banded: 8 x 8 tiles turned into columns
// Every lane of an (N, C) row vector is another channel, each with its own tables, so a lookup
// by register permute needs one channel per vector: the kernels below turn each tile of 8 rows
// x 8 channels into 8 vectors of one channel's 8 rows (24 shuffles), where a channel's interval
// index is m compares with its broadcast breakpoints, shared by the 2b+1 terms that read the
// input, and each term's level (and intercept) is one shuffle of its m+1 <= 16 table entries
// (two permutes and a blend), then turn the results back. Tables (ops.cpp, KernelArgs::
// transposed): bp (C, m); forward lv (C, 2b+1, Q), per output channel i and offset d the m+1
// levels[i, d+b, :] padded to 16, then (continuous form, Q = 32) the intercepts padded alike;
// backward lv (C, 2b+1, 16), per input channel j and offset d the levels[j-d, d+b, :] (0 outside
// 0..C-1). Float with 8 lanes (avx2) only; the partial sums are kernels.h's columns layout.

template <typename T>
struct Tile8 {
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  static constexpr bool enabled = std::is_same<T, float>::value && S::L == 8;
  // v[0..7] (row q: lanes = channels) -> v[l] (channel l: lanes = rows): unpack, shufps, perm2f128.
  static inline void transpose(V* v) {
    V t[8], u[8];
    for (int q = 0; q < 8; q += 2) {
      t[q] = __builtin_shuffle(v[q], v[q + 1], I{0, 8, 1, 9, 4, 12, 5, 13});
      t[q + 1] = __builtin_shuffle(v[q], v[q + 1], I{2, 10, 3, 11, 6, 14, 7, 15});
    }
    for (int q = 0; q < 8; q += 4)
      for (int h = 0; h < 2; ++h) {
        u[q + 2 * h] = __builtin_shuffle(t[q + h], t[q + h + 2], I{0, 1, 8, 9, 4, 5, 12, 13});
        u[q + 2 * h + 1] = __builtin_shuffle(t[q + h], t[q + h + 2], I{2, 3, 10, 11, 6, 7, 14, 15});
      }
    for (int l = 0; l < 4; ++l) {
      v[l] = __builtin_shuffle(u[l], u[l + 4], I{0, 1, 2, 3, 8, 9, 10, 11});
      v[l + 4] = __builtin_shuffle(u[l], u[l + 4], I{4, 5, 6, 7, 12, 13, 14, 15});
    }
  }
  // Entry k of a table of m+1 <= 16 values (padded to 16) at t, per lane; hi: k > 7 (high(k)).
  template <int MT>
  static inline V lookup(const T* t, I k, I hi, int64_t m) {
    const V lo = __builtin_shuffle(S::load(t), k);  // vpermps: k mod 8
    if ((MT > 0 ? MT : m) < 8) return lo;
    return S::sel(hi, __builtin_shuffle(S::load(t + 8), k), lo);
  }
  static inline I high(I k) { return k > (typename S::IS)7; }
  // a * b + c in one rounding where the ISA has FMA (TMAF_FMA), else two.
  static inline V fmadd(V a, V b, V c) {
#ifdef TMAF_FMA
    return _mm256_fmadd_ps(a, b, c);
#else
    return a * b + c;
#endif
  }
  // k(x) = #{s_q < x} for one channel's breakpoints s (x NaN: 0).
  template <int MT>
  static inline I index(V x, const T* s, int64_t m_rt) {
    const int64_t m = MT > 0 ? MT : m_rt;
    I k{};
#pragma GCC unroll 32
    for (int64_t q = 0; q < m; ++q) k -= (I)(x > S::bc(s[q]));
    return k;
  }
  // Software prefetch of rows r .. r1-1, channels j0 .. j1-1 (clamped to 0..C-1, rows to n_rows):
  // each row of a tile is another page when C * sizeof(T) >= 4096, where the hardware prefetchers
  // (which stay within a page) do not follow.
  static inline void prefetch_rows(const T* x, int64_t C, int64_t n_rows, int64_t r, int64_t r1, int64_t j0,
                                   int64_t j1) {
    j0 = std::max<int64_t>(j0, 0);
    j1 = std::min<int64_t>(j1, C);
    r1 = std::min<int64_t>(r1, n_rows);
    for (int64_t q = r; q < r1; ++q)
      for (int64_t c = j0; c < j1; c += 64 / sizeof(T)) __builtin_prefetch(x + q * C + c);
    if (j1 > j0)
      for (int64_t q = r; q < r1; ++q) __builtin_prefetch(x + q * C + j1 - 1);
  }
  // Rows r .. r+nr-1 (nr <= 8; others read 0) of channels j0 .. j0+7 (0 outside 0..C-1), as
  // 8 channel vectors.
  static inline void load_columns(const T* x, int64_t C, int64_t r, int nr, int64_t j0, V* v) {
    for (int q = 0; q < 8; ++q) v[q] = q < nr ? S::loadw(x + (r + q) * C, j0, C) : S::zero();
    transpose(v);
  }
  // The channel vectors v of channels j0 .. j0+7 back into rows r .. r+nr-1, channels j0 .. c1-1.
  static inline void store_columns(T* y, int64_t C, int64_t r, int nr, int64_t j0, int64_t c1, V* v) {
    transpose(v);
    for (int q = 0; q < nr; ++q) S::storew(y + (r + q) * C, j0, c1, v[q]);
  }
};

constexpr int64_t kTrHalo = 8;  // channel vectors beyond a task's block on each side, at most

// One output tile of 8 channels i0 .. i0+7, all of whose 2B+1 inputs lie in 0..C-1 and none of
// them infinite: y = 0 + term(-B) + ... + term(B) with term = alpha(x) x (+ c(x)), the same bits
// as with the zero-level rule (section "Semantics"): a term alpha x = -0 added to a sum started
// at +0 changes nothing, and 0 * x is NaN only for infinite x.
template <typename T, int MT, bool AFF, int B>
static inline void fwd_tr_tile(const T* tab, int64_t i0, int64_t jl, const typename Simd<T>::V* xt,
                               const typename Simd<T>::I* kt, const typename Simd<T>::I* hi, int64_t m,
                               typename Simd<T>::V* y) {
  using TL = Tile8<T>;
  using V = typename Simd<T>::V;
  constexpr int64_t W = 2 * B + 1, Q = AFF ? 32 : 16;
#pragma GCC unroll 8
  for (int l = 0; l < 8; ++l) {
    const T* tv = tab + (i0 + l) * W * Q;
    V acc = Simd<T>::zero();
#pragma GCC unroll 7
    for (int d = -B; d <= B; ++d) {
      const int64_t jj = i0 + l + d - jl;
      V term = TL::template lookup<MT>(tv + (d + B) * Q, kt[jj], hi[jj], m) * xt[jj];
      if constexpr (AFF) term += TL::template lookup<MT>(tv + (d + B) * Q + 16, kt[jj], hi[jj], m);
      acc += term;
    }
    y[l] = acc;
  }
}

template <typename T, int MT, bool AFF>
static void fwd_cols_tr(const KernelArgs& A, int64_t t0, int64_t t1) {
  using TL = Tile8<T>;
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  if constexpr (TL::enabled) {
    const int64_t m = MT > 0 ? MT : A.m, b = A.b, C = A.C, W = 2 * b + 1, Q = AFF ? 32 : 16;
    const T* x = static_cast<const T*>(A.x);
    T* out = static_cast<T*>(A.out);
    const T* bp = static_cast<const T*>(A.bp);
    const T* tab = static_cast<const T*>(A.lv);
    V xt[kTileMaxBlock + 2 * kTrHalo];
    I kt[kTileMaxBlock + 2 * kTrHalo], hi[kTileMaxBlock + 2 * kTrHalo];
    for (int64_t tt = t0; tt < t1; ++tt) {
      const int64_t rb = tt / A.n_cb, cb = tt % A.n_cb;
      const int64_t r0 = rb * A.rblock, r1 = std::min(A.outer, r0 + A.rblock);
      const int64_t c0 = cb * A.cblock, c1 = std::min(C, c0 + A.cblock), jl = c0 - b;
      for (int64_t r = r0; r < r1; r += 8) {
        const int nr = static_cast<int>(std::min<int64_t>(8, r1 - r));
        TL::prefetch_rows(x, C, r1, r + 8, r + 16, jl, c1 + b);  // the next group's rows
        // every input channel jl .. c1+b-1 once: its 8 rows and its interval index
        I inf{};
        for (int64_t j0 = jl; j0 < c1 + b; j0 += 8) {
          TMAF_MCA_BEGIN("fwd_cols_tr_index");
          V* v = xt + (j0 - jl);
          TL::load_columns(x, C, r, nr, j0, v);
#pragma GCC unroll 8
          for (int l = 0; l < 8; ++l) {
            const int64_t j = j0 + l;
            const I k = (j >= 0 && j < C) ? TL::template index<MT>(v[l], bp + j * m, m) : I{};
            kt[j - jl] = k;
            hi[j - jl] = TL::high(k);
            inf |= S::isinf(v[l]);
          }
          TMAF_MCA_END("fwd_cols_tr_index");
        }
        const bool finite = !S::any(inf);
        for (int64_t i0 = c0; i0 < c1; i0 += 8) {
          V y[8];
          if (finite && i0 - b >= 0 && i0 + 8 + b <= C && i0 + 8 <= c1) {
            if constexpr (AFF) TMAF_MCA_BEGIN("fwd_cols_tr_terms_continuous"); else TMAF_MCA_BEGIN("fwd_cols_tr_terms");
            switch (b) {
              case 1: fwd_tr_tile<T, MT, AFF, 1>(tab, i0, jl, xt, kt, hi, m, y); break;
              case 2: fwd_tr_tile<T, MT, AFF, 2>(tab, i0, jl, xt, kt, hi, m, y); break;
              default: fwd_tr_tile<T, MT, AFF, 3>(tab, i0, jl, xt, kt, hi, m, y); break;
            }
            if constexpr (AFF) TMAF_MCA_END("fwd_cols_tr_terms_continuous"); else TMAF_MCA_END("fwd_cols_tr_terms");
          } else {  // the matrix's edges, ragged ends, infinite inputs: every rule spelled out
            for (int l = 0; l < 8; ++l) {
              const int64_t i = i0 + l;
              y[l] = S::zero();
              if (i >= c1) continue;
              for (int64_t d = -b; d <= b; ++d) {
                const int64_t j = i + d;
                if (j < 0 || j >= C) continue;  // no term: outside the matrix
                const T* tv = tab + (i * W + d + b) * Q;
                const V xv = xt[j - jl], a = TL::template lookup<MT>(tv, kt[j - jl], hi[j - jl], m);
                V term = S::drop((a == S::zero()) & (xv == xv), a * xv);
                if constexpr (AFF) term += TL::template lookup<MT>(tv + 16, kt[j - jl], hi[j - jl], m);
                y[l] += term;
              }
            }
          }
          TL::store_columns(out, C, r, nr, i0, c1, y);
        }
      }
    }
  }
}

// ------------------------------------------------------------ columns layout (inner == 1)
// Rows outer, channel vectors inner: memory is read and written in order (a channel-vector-outer
// walk touches one line per row, a new page per access when C * sizeof(T) >= 4096). Tables and
// partial sums are blocked per vector of L channels (kernels.h), so one vector's values sit
// together at fixed offsets; the caller sizes a task's channel block to keep them in L1.

// The forward table of one term in the blocked layout: m breakpoints, m+1 levels, m+1 intercepts.
template <typename T>
struct ColsTerm {
  const T* tv;
  int64_t m;
  typename Simd<T>::V bp(int64_t k) const { return Simd<T>::load(tv + k * Simd<T>::L); }
  typename Simd<T>::V lv(int64_t k) const { return Simd<T>::load(tv + (m + k) * Simd<T>::L); }
  typename Simd<T>::V ic(int64_t k) const { return Simd<T>::load(tv + (2 * m + 1 + k) * Simd<T>::L); }
};

// form_term of lanes x with the blocked table t.
template <typename T, int MT, bool AFF>
static inline typename Simd<T>::V cols_term(typename Simd<T>::V x, const ColsTerm<T>& t) {
  return form_term<T, MT, AFF>(x, [&](int64_t k) { return t.bp(k); }, [&](int64_t k) { return t.lv(k); },
                               [&](int64_t k) { return t.ic(k); }, t.m);
}

// Diagonal forward of rows r0..r1, channels c0..c1: tiles of R rows, each table vector read
// once for R rows, then the rows left over one by one.
template <typename T, int MT, bool AFF>
static void fwd_cols_diag(const KernelArgs& A, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L, R = 4;  // rows per tile
  const int64_t m = MT > 0 ? MT : A.m, C = A.C, blk = 2 * m + 1 + (AFF ? m + 1 : 0);
  const T* x = static_cast<const T*>(A.x);
  T* out = static_cast<T*>(A.out);
  const T* tab = static_cast<const T*>(A.lv);
  int64_t r = r0;
  for (; r + R <= r1; r += R) {
    const T* xr = x + r * C;
    T* yr = out + r * C;
    int64_t i0 = c0;
    for (; i0 + L <= c1; i0 += L) {
      const ColsTerm<T> tt{tab + (i0 / L) * blk * L, m};
      V xv[R], yv[R];
      for (int q = 0; q < R; ++q) {
        __builtin_prefetch(xr + (q + R) * C + i0);  // the same channels R rows on
        xv[q] = S::load(xr + q * C + i0);
      }
      form_terms<T, MT, AFF, R>(xv, yv, [&](int64_t k) { return tt.bp(k); }, [&](int64_t k) { return tt.lv(k); },
                                [&](int64_t k) { return tt.ic(k); }, m);
      for (int q = 0; q < R; ++q) S::store(yr + q * C + i0, yv[q]);
    }
    if (i0 < c1)
      for (int q = 0; q < R; ++q)
        S::storew(yr + q * C, i0, c1, cols_term<T, MT, AFF>(S::loadw(xr + q * C, i0, c1),
                                                            {tab + (i0 / L) * blk * L, m}));
  }
  for (; r < r1; ++r)
    for (int64_t i0 = c0; i0 < c1; i0 += L) {
      __builtin_prefetch(x + (r + 1) * C + i0);  // the same channels of the next row
      S::storew(out + r * C, i0, c1, cols_term<T, MT, AFF>(S::loadw(x + r * C, i0, c1),
                                                           {tab + (i0 / L) * blk * L, m}));
    }
}

// Banded forward of rows r0..r1, channels c0..c1 on the blocked tables: 2b+1 compare chains.
template <typename T, int MT, bool AFF>
static void fwd_cols_band(const KernelArgs& A, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  const int64_t m = MT > 0 ? MT : A.m, b = A.b, C = A.C, W = 2 * b + 1;
  const int64_t blk = 2 * m + 1 + (AFF ? m + 1 : 0);
  const T* tab = static_cast<const T*>(A.lv);  // (n_vec, W, blk, L)
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = static_cast<const T*>(A.x) + r * C;
    T* yr = static_cast<T*>(A.out) + r * C;
    for (int64_t i0 = c0; i0 < c1; i0 += L) {
      if constexpr (AFF) TMAF_MCA_BEGIN("fwd_cols_chain_terms_continuous"); else TMAF_MCA_BEGIN("fwd_cols_chain_terms");
      __builtin_prefetch(xr + C + i0);
      const T* tv = tab + (i0 / L) * W * blk * L;
      V y = S::zero();
      for (int64_t d = -b; d <= b; ++d) {
        if (i0 + L - 1 + d < 0 || i0 + d > C - 1) continue;  // no lane reads a channel
        y += cols_term<T, MT, AFF>(S::loadw(xr, i0 + d, C), {tv + (d + b) * blk * L, m});
      }
      S::storew(yr, i0, c1, y);
      if constexpr (AFF) TMAF_MCA_END("fwd_cols_chain_terms_continuous"); else TMAF_MCA_END("fwd_cols_chain_terms");
    }
  }
}

template <typename T, int MT, bool AFF>
void fwd_cols(const KernelArgs& A, int64_t t0, int64_t t1) {
  if (A.transposed) return fwd_cols_tr<T, MT, AFF>(A, t0, t1);
  if (A.grid != nullptr) return fwd_cols_uniform<T, MT, AFF>(A, t0, t1);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t rb = t / A.n_cb, cb = t % A.n_cb;
    const int64_t r0 = rb * A.rblock, r1 = std::min(A.outer, r0 + A.rblock);
    const int64_t c0 = cb * A.cblock, c1 = std::min(A.C, c0 + A.cblock);
    if (A.b == 0) fwd_cols_diag<T, MT, AFF>(A, r0, r1, c0, c1);  // one term, no neighbours
    else fwd_cols_band<T, MT, AFF>(A, r0, r1, c0, c1);
  }
}

// The columns backward's task geometry: rows r0..r1, channels c0..c1, its partial sums `part`
// (zeroed here) and one NaN mask per channel vector.
template <typename T>
struct ColsTask {
  int64_t r0, r1, c0, c1, nv;
  T* part;
  ColsTask(const KernelArgs& A, int64_t t, int64_t P) {
    constexpr int L = Simd<T>::L;
    const int64_t rb = t / A.n_cb, cb = t % A.n_cb, n_vec = (A.C + L - 1) / L, W = 2 * A.b + 1;
    r0 = rb * A.rblock;
    r1 = std::min(A.outer, r0 + A.rblock);
    c0 = cb * A.cblock;
    c1 = std::min(A.C, c0 + A.cblock);
    nv = (c1 - c0 + L - 1) / L;
    part = static_cast<T*>(A.partial) + (rb * n_vec + c0 / L) * W * P * L;  // (n_rb, n_vec, W, P, L)
    std::fill(part, part + nv * W * P * L, T(0));
  }
};

// A NaN input makes every level gradient reading it NaN: the n sums of each lane set in nan[v].
template <typename T>
static void nan_partials(T* part, const typename Simd<T>::I* nan, int64_t nv, int64_t n) {
  constexpr int L = Simd<T>::L;
  for (int64_t v = 0; v < nv; ++v) {
    if (!Simd<T>::any(nan[v])) continue;
    T* pv = part + v * n * L;
    for (int l = 0; l < L; ++l)
      if (nan[v][l])
        for (int64_t q = 0; q < n; ++q) pv[q * L + l] = std::numeric_limits<T>::quiet_NaN();
  }
}

template <typename T, int MT, bool AFF>
void bwd_cols_uniform(const KernelArgs& A, int64_t t0, int64_t t1) {
  using S = Simd<T>;
  constexpr int L = S::L;
  const int64_t C = A.C, m1 = A.m + 1, W = 2 * A.b + 1, P = AFF ? 2 * m1 : m1;
  const T* x = static_cast<const T*>(A.x);
  const T* g = static_cast<const T*>(A.g);
  T* gx = static_cast<T*>(A.gx);
  const LaneGrid<T> grid(A);
  typename S::I nan[kMaxColsBlock / L];
  for (int64_t t = t0; t < t1; ++t) {
    const ColsTask<T> tk(A, t, P);
    for (int64_t v = 0; v < tk.nv; ++v) nan[v] = typename S::I{};
    for (int64_t r = tk.r0; r < tk.r1; ++r) {
      for (int64_t c = tk.c0; c < tk.c1; c += 64 / sizeof(T)) {
        __builtin_prefetch(x + (r + 1) * C + c);  // the same channels of the next row
        __builtin_prefetch(g + (r + 1) * C + c);
      }
      for (int64_t v = 0; v < tk.nv; ++v) {
        const int64_t j0 = tk.c0 + v * L;
        const typename S::V xv = S::loadw(x + r * C, j0, tk.c1);
        nan[v] |= S::isnan(xv);
        S::storew(gx + r * C, j0, tk.c1,
                  bwd_cols_uniform_vec<T, MT, AFF>(A, grid, xv, g + r * C, j0, tk.part + v * W * P * L));
      }
    }
    nan_partials<T>(tk.part, nan, tk.nv, W * P);
  }
}

// One row r and channel vector j0 of the blocked-table backward, any band: the 2b+1 terms that
// read x_j; returns x's NaN lanes.
template <typename T, int MT, bool AFF>
static typename Simd<T>::I bwd_cols_row_vec(const KernelArgs& A, const ColsTask<T>& tk, int64_t r, int64_t j0) {
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  constexpr int L = S::L;
  const int64_t m = MT > 0 ? MT : A.m, b = A.b, C = A.C, W = 2 * b + 1, m1 = m + 1;
  const int64_t P = AFF ? 2 * m1 : m1, blk = m + W * m1;
  const T* xr = static_cast<const T*>(A.x) + r * C;
  const T* gr = static_cast<const T*>(A.g) + r * C;
  __builtin_prefetch(xr + C + j0);  // the same channels of the next row
  __builtin_prefetch(gr + C + j0);
  const T* tv = static_cast<const T*>(A.lv) + (j0 / L) * blk * L;  // (n_vec, m + W (m+1), L)
  T* pv = tk.part + ((j0 - tk.c0) / L) * W * P * L;
  if constexpr (AFF) TMAF_MCA_BEGIN("bwd_cols_chain_continuous"); else TMAF_MCA_BEGIN("bwd_cols_chain");
  const V xv = S::loadw(xr, j0, tk.c1);
  I gt[MT > 0 ? MT : kMaxM];
  compare_all<T, MT>(xv, [&](int64_t k) { return S::load(tv + k * L); }, gt, m);
  V gxv = S::zero();
  for (int64_t d = -b; d <= b; ++d) {
    if (j0 + L - 1 - d < 0 || j0 - d > C - 1) continue;  // no lane has i = j - d in range
    const T* td = tv + (m + (d + b) * m1) * L;
    struct Acc {  // accumulator k of this vector and offset, in the task's partial sums
      T* p;
      struct Ref {
        T* q;
        Ref& operator+=(V v) { S::store(q, S::load(q) + v); return *this; }
      };
      Ref operator()(int64_t k) const { return Ref{p + k * L}; }
    } acca{pv + (d + b) * P * L};
    gxv += bwd_step<T, MT, AFF>(xv, S::loadw(gr, j0 - d, C), gt, [&](int64_t k) { return S::load(td + k * L); },
                                acca, m);
  }
  const I bad = S::isnan(xv);
  S::storew(static_cast<T*>(A.gx) + r * C, j0, tk.c1, S::sel(bad, xv, gxv));
  if constexpr (AFF) TMAF_MCA_END("bwd_cols_chain_continuous"); else TMAF_MCA_END("bwd_cols_chain");
  return bad;
}

// Diagonal backward of R rows r.. and channel vector j0 (no infinite input): each accumulator
// read and written once per tile; returns x's NaN lanes.
template <typename T, int MT, bool AFF, int R>
static typename Simd<T>::I bwd_cols_diag_tile(const KernelArgs& A, const ColsTask<T>& tk, int64_t r, int64_t j0,
                                              const typename Simd<T>::V* xv, const typename Simd<T>::V* gv) {
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  constexpr int L = S::L;
  const int64_t m = MT > 0 ? MT : A.m, m1 = m + 1, P = AFF ? 2 * m1 : m1;
  const T* tv = static_cast<const T*>(A.lv) + (j0 / L) * (m + m1) * L;  // m breakpoints, m+1 levels
  T* pv = tk.part + ((j0 - tk.c0) / L) * P * L;
  const auto acc = [&](int64_t k, V v) { S::store(pv + k * L, S::load(pv + k * L) + v); };
  V p[R], a[R];
  I prev[R];
  const V l0 = S::load(tv + m * L);
  for (int q = 0; q < R; ++q) { p[q] = gv[q] * xv[q]; a[q] = l0; prev[q] = ~I{}; }
#pragma GCC unroll 32
  for (int64_t k = 0; k < m; ++k) {  // interval k: x > s_{k-1} and not x > s_k
    const V sk = S::load(tv + k * L), lk = S::load(tv + (m + k + 1) * L);
    V sp = S::zero(), sg = S::zero();
    for (int q = 0; q < R; ++q) {
      const I gt = xv[q] > sk;
      sp += S::keep(prev[q] & ~gt, p[q]);
      if constexpr (AFF) sg += S::keep(prev[q] & ~gt, gv[q]);
      a[q] = S::sel(gt, lk, a[q]);
      prev[q] = gt;
    }
    acc(k, sp);
    if constexpr (AFF) acc(m1 + k, sg);
  }
  V sp = S::zero(), sg = S::zero();
  for (int q = 0; q < R; ++q) {
    sp += S::keep(prev[q], p[q]);
    if constexpr (AFF) sg += S::keep(prev[q], gv[q]);
  }
  acc(m, sp);
  if constexpr (AFF) acc(m1 + m, sg);
  I bad = I{};
  for (int q = 0; q < R; ++q) {
    const I nq = S::isnan(xv[q]);
    bad |= nq;
    S::storew(static_cast<T*>(A.gx) + (r + q) * A.C, j0, tk.c1, S::sel(nq, xv[q], a[q] * gv[q]));
  }
  return bad;
}

// Diagonal backward of the task's rows in tiles of R; returns the first row not done.
template <typename T, int MT, bool AFF>
static int64_t bwd_cols_diag_rows(const KernelArgs& A, const ColsTask<T>& tk, typename Simd<T>::I* nan) {
  using S = Simd<T>;
  constexpr int L = S::L, R = 2;
  const T* x = static_cast<const T*>(A.x);
  const T* g = static_cast<const T*>(A.g);
  const int64_t C = A.C;
  int64_t r = tk.r0;
  for (; r + R <= tk.r1; r += R)
    for (int64_t j0 = tk.c0; j0 < tk.c1; j0 += L) {
      typename S::V xv[R], gv[R];
      typename S::I inf{};
      for (int q = 0; q < R; ++q) {
        __builtin_prefetch(x + (r + q + R) * C + j0);
        __builtin_prefetch(g + (r + q + R) * C + j0);
        xv[q] = S::loadw(x + (r + q) * C, j0, tk.c1);
        gv[q] = S::loadw(g + (r + q) * C, j0, tk.c1);
        inf |= S::isinf(xv[q]);
      }
      if (S::any(inf)) {  // the zero-level rule at +-inf needs alpha(x) first: row by row
        for (int q = 0; q < R; ++q) nan[(j0 - tk.c0) / L] |= bwd_cols_row_vec<T, MT, AFF>(A, tk, r + q, j0);
        continue;
      }
      nan[(j0 - tk.c0) / L] |= bwd_cols_diag_tile<T, MT, AFF, R>(A, tk, r, j0, xv, gv);
    }
  return r;
}

constexpr int kTrGroups = 4;        // backward: row groups of 8 taken together (32 rows)

// The backward of one input channel j over kTrGroups groups of 8 rows (x's vectors xv, index k,
// upstream rows g(q, i) of output channel i): per offset d the level of term (j - d, d) by one
// shuffle and the input gradient; then per interval u, z = x where k = u (else 0), shared by the
// 2b+1 terms, and each term's sum of g z (AFF: and of g where k = u) in the per-lane sums pj (P
// per offset, 8 lanes each), read and written once for the 32 rows. FINITE: no input of the
// block is infinite, so the zero-level rule (0 where the level is 0 and x infinite) has nothing
// to do; otherwise p = g x is formed per term and the rule applied.
template <typename T, int MT, bool AFF, int B, bool FINITE, class G>
static inline void bwd_tr_column(const T* tv, const typename Simd<T>::V* xv, const typename Simd<T>::I* k,
                                 const G& g, int64_t j, int64_t C, int64_t m, T* pj, typename Simd<T>::V* gx) {
  using TL = Tile8<T>;
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  constexpr int R = kTrGroups, L = S::L, W = 2 * B + 1;
  const int64_t m1 = m + 1, P = AFF ? 2 * m1 : m1;
  // d in -B..B reads output channel i = j - d: i in 0..C-1 where -(C-1-j) <= d <= j
  const int d0 = std::max(-B, -static_cast<int>(std::min<int64_t>(C - 1 - j, B)));
  const int d1 = std::min(B, static_cast<int>(std::min<int64_t>(j, B)));
  I inf[R];
  I zero_rule[W][R];  // !FINITE: where the level is 0 and x infinite
  for (int q = 0; q < R; ++q) {
    const I hk = TL::high(k[q]);
    gx[q] = S::zero();
    if constexpr (!FINITE) inf[q] = S::isinf(xv[q]);
#pragma GCC unroll 7
    for (int d = -B; d <= B; ++d) {
      if (d < d0 || d > d1) continue;  // no term: outside the matrix
      const V a = TL::template lookup<MT>(tv + (d + B) * 16, k[q], hk, m);
      gx[q] += a * g(q, j - d);
      if constexpr (!FINITE) zero_rule[d + B][q] = (a == S::zero()) & inf[q];
    }
  }
#pragma GCC unroll 32
  for (int64_t u = 0; u <= m; ++u) {
    V sp[W], sg[W];
#pragma GCC unroll 7
    for (int d = -B; d <= B; ++d) {
      if (d < d0 || d > d1) continue;
      sp[d + B] = S::load(pj + ((d + B) * P + u) * L);
      if constexpr (AFF) sg[d + B] = S::load(pj + ((d + B) * P + m1 + u) * L);
    }
    for (int q = 0; q < R; ++q) {
      const I in = k[q] == (typename S::IS)u;
      const V z = S::keep(in, xv[q]);
      V e;
      if constexpr (AFF) e = S::keep(in, S::bc(T(1)));
#pragma GCC unroll 7
      for (int d = -B; d <= B; ++d) {
        if (d < d0 || d > d1) continue;
        const V gv = g(q, j - d);
        if constexpr (FINITE) sp[d + B] = TL::fmadd(z, gv, sp[d + B]);
        else sp[d + B] += S::keep(in, S::drop(zero_rule[d + B][q], gv * xv[q]));
        if constexpr (AFF) sg[d + B] = TL::fmadd(e, gv, sg[d + B]);
      }
    }
#pragma GCC unroll 7
    for (int d = -B; d <= B; ++d) {
      if (d < d0 || d > d1) continue;
      S::store(pj + ((d + B) * P + u) * L, sp[d + B]);
      if constexpr (AFF) S::store(pj + ((d + B) * P + m1 + u) * L, sg[d + B]);
    }
  }
}

// The backward on 8 x 8 tiles, 32 rows at a time: per input channel j its index (once for the
// 2b+1 terms), then bwd_tr_column; the per-lane (row) sums are held in the task's own buffer for
// all of its rows, and at its end the 8 lanes of each are added in lane order into the columns
// partial sums (kernels.h): a fixed order, whatever the threads.
template <typename T, int MT, bool AFF, int B>
static void bwd_cols_tr_band(const KernelArgs& A, int64_t t0, int64_t t1) {
  using TL = Tile8<T>;
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  constexpr int L = S::L, R = kTrGroups;
  const int64_t m = MT > 0 ? MT : A.m, m1 = m + 1, C = A.C, W = 2 * B + 1;
  const int64_t P = AFF ? 2 * m1 : m1;
  const T* x = static_cast<const T*>(A.x);
  const T* g = static_cast<const T*>(A.g);
  T* gx = static_cast<T*>(A.gx);
  const T* bp = static_cast<const T*>(A.bp);
  const T* tab = static_cast<const T*>(A.lv);
  V xt[R][kTileMaxBlock], gt[R][kTileMaxBlock + 2 * kTrHalo];
  I kt[R][kTileMaxBlock], nan[kTileMaxBlock];
  thread_local std::vector<T> sums;
  for (int64_t t = t0; t < t1; ++t) {
    const ColsTask<T> tk(A, t, P);
    const int64_t c0 = tk.c0, c1 = tk.c1, n = c1 - c0, gl = c0 - B;
    sums.assign(n * W * P * L, T(0));
    T* acc = sums.data();
    for (int64_t j = 0; j < n; ++j) nan[j] = I{};
    for (int64_t r = tk.r0; r < tk.r1; r += 8 * R) {
      TL::prefetch_rows(x, C, tk.r1, r + 8 * R, r + 16 * R, c0, c1);  // the next block's rows
      TL::prefetch_rows(g, C, tk.r1, r + 8 * R, r + 16 * R, gl, c1 + B);
      I inf{};
      for (int q = 0; q < R; ++q) {
        const int64_t rq = r + 8 * q;
        const int nr = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(8, tk.r1 - rq)));
        for (int64_t j0 = c0; j0 < c1; j0 += 8) {
          TL::load_columns(x, C, rq, nr, j0, xt[q] + (j0 - c0));
          for (int l = 0; l < 8 && j0 + l < c1; ++l) {
            const V xv = xt[q][j0 + l - c0];
            kt[q][j0 + l - c0] = TL::template index<MT>(xv, bp + (j0 + l) * m, m);
            nan[j0 + l - c0] |= S::isnan(xv);
            inf |= S::isinf(xv);
          }
        }
        for (int64_t j0 = gl; j0 < c1 + B; j0 += 8) TL::load_columns(g, C, rq, nr, j0, gt[q] + (j0 - gl));
      }
      const bool finite = !S::any(inf);
      const auto gof = [&](int q, int64_t i) { return gt[q][i - gl]; };
      for (int64_t j0 = c0; j0 < c1; j0 += 8) {
        V gxv[R][8];
        for (int l = 0; l < 8; ++l) {
          const int64_t j = j0 + l;
          if (j >= c1) {
            for (int q = 0; q < R; ++q) gxv[q][l] = S::zero();
            continue;
          }
          V xv[R];
          I k[R];
          for (int q = 0; q < R; ++q) {
            xv[q] = xt[q][j - c0];
            k[q] = kt[q][j - c0];
          }
          V gs[R];
          T* pj = acc + (j - c0) * W * P * L;
          if (finite) {
            if constexpr (AFF) TMAF_MCA_BEGIN("bwd_cols_tr_continuous"); else TMAF_MCA_BEGIN("bwd_cols_tr");
            bwd_tr_column<T, MT, AFF, B, true>(tab + j * W * 16, xv, k, gof, j, C, m, pj, gs);
            if constexpr (AFF) TMAF_MCA_END("bwd_cols_tr_continuous"); else TMAF_MCA_END("bwd_cols_tr");
          } else {
            bwd_tr_column<T, MT, AFF, B, false>(tab + j * W * 16, xv, k, gof, j, C, m, pj, gs);
          }
          for (int q = 0; q < R; ++q) gxv[q][l] = S::sel(S::isnan(xv[q]), xv[q], gs[q]);
        }
        for (int q = 0; q < R; ++q) {
          const int64_t rq = r + 8 * q;
          const int nr = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(8, tk.r1 - rq)));
          TL::store_columns(gx, C, rq, nr, j0, c1, gxv[q]);
        }
      }
    }
    for (int64_t j = 0; j < n; ++j) {  // lanes (rows) in order into the slot of channel c0 + j
      const bool bad = S::any(nan[j]);
      T* slot = tk.part + (j / L) * W * P * L + j % L;
      for (int64_t q = 0; q < W * P; ++q)
        slot[q * L] = bad ? std::numeric_limits<T>::quiet_NaN() : S::hsum(S::load(acc + (j * W * P + q) * L));
    }
  }
}

template <typename T, int MT, bool AFF>
static void bwd_cols_tr(const KernelArgs& A, int64_t t0, int64_t t1) {
  if constexpr (Tile8<T>::enabled) {
    switch (A.b) {
      case 1: return bwd_cols_tr_band<T, MT, AFF, 1>(A, t0, t1);
      case 2: return bwd_cols_tr_band<T, MT, AFF, 2>(A, t0, t1);
      default: return bwd_cols_tr_band<T, MT, AFF, 3>(A, t0, t1);
    }
  }
}

template <typename T, int MT, bool AFF>
void bwd_cols(const KernelArgs& A, int64_t t0, int64_t t1) {
  if (A.transposed) return bwd_cols_tr<T, MT, AFF>(A, t0, t1);
  if (A.grid != nullptr) return bwd_cols_uniform<T, MT, AFF>(A, t0, t1);
  using S = Simd<T>;
  constexpr int L = S::L;
  const int64_t m1 = A.m + 1, W = 2 * A.b + 1, P = AFF ? 2 * m1 : m1;
  typename S::I nan[kMaxColsBlock / L];
  for (int64_t t = t0; t < t1; ++t) {
    const ColsTask<T> tk(A, t, P);
    for (int64_t v = 0; v < tk.nv; ++v) nan[v] = typename S::I{};
    const int64_t r = A.b == 0 ? bwd_cols_diag_rows<T, MT, AFF>(A, tk, nan) : tk.r0;
    for (int64_t q = r; q < tk.r1; ++q)
      for (int64_t j0 = tk.c0; j0 < tk.c1; j0 += L) nan[(j0 - tk.c0) / L] |= bwd_cols_row_vec<T, MT, AFF>(A, tk, q, j0);
    nan_partials<T>(tk.part, nan, tk.nv, W * P);
  }
}

}  // namespace TMAF_ISA_NS
}  // namespace tmaf_native
