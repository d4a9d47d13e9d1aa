// Banded TMAF kernels, written once with GCC/Clang vector extensions and compiled once per ISA:
// each kernels_<isa>.cpp defines TMAF_ISA_NS and TMAF_VBYTES (vector width in bytes) and
// includes this file under a `#pragma GCC target`. No torch here: see kernels.h.
//
// Semantics (docs/method.md): interval k(x) = #{s_k < x} (closed on the right), comparisons
// in the compute dtype; alpha(NaN) = NaN; a term whose level is exactly 0 is +0 at any
// non-NaN input (so the ReLU start is bit-exact ReLU, -inf included) and contributes 0 to the
// level gradient; a NaN input makes every level gradient of the terms that read it NaN.
// The level gradient is reduced per task in a fixed order: bit-identical for any thread count.

namespace tmaf_native {
namespace TMAF_ISA_NS {

template <typename T> struct IntOf;
template <> struct IntOf<float> { using type = int32_t; static constexpr uint32_t abs = 0x7fffffffu, inf = 0x7f800000u; };
template <> struct IntOf<double> { using type = int64_t; static constexpr uint64_t abs = 0x7fffffffffffffffull, inf = 0x7ff0000000000000ull; };

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
  static inline V sel(I m, V a, V b) { return (V)((m & (I)a) | (~m & (I)b)); }
  static inline V keep(I m, V a) { return (V)(m & (I)a); }      // a where m, else +0
  static inline V drop(I m, V a) { return (V)(~m & (I)a); }     // +0 where m, else a
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

// alpha(x) by a chain of compare-and-select; NaN lanes are not fixed here.
template <typename T, int MT>
static inline typename Simd<T>::V alpha_of(typename Simd<T>::V x, const typename Simd<T>::V* bpv,
                                           const typename Simd<T>::V* lvv, int64_t m_rt) {
  using S = Simd<T>;
  const int64_t m = MT > 0 ? MT : m_rt;
  typename S::V a = lvv[0];
#pragma GCC unroll 32
  for (int64_t k = 0; k < m; ++k) a = S::sel(x > bpv[k], lvv[k + 1], a);
  return a;
}

// One forward term alpha(x) * x: +0 where the level is 0 and x is not NaN; NaN where x is NaN.
template <typename T, int MT>
static inline typename Simd<T>::V term_of(typename Simd<T>::V x, const typename Simd<T>::V* bpv,
                                          const typename Simd<T>::V* lvv, int64_t m) {
  using S = Simd<T>;
  typename S::V a = alpha_of<T, MT>(x, bpv, lvv, m);
  return S::drop((a == S::zero()) & (x == x), a * x);
}

// One backward step for input values x (channel j) and upstream g (channel i = j - d):
// returns alpha(x) * g (the input-gradient term) and adds g * x into the accumulator of
// x's interval (0 where the level is 0 and x is infinite).
template <typename T, int MT>
static inline typename Simd<T>::V bwd_step(typename Simd<T>::V x, typename Simd<T>::V g,
                                           const typename Simd<T>::V* bpv, const typename Simd<T>::V* lvv,
                                           typename Simd<T>::V* acc, int64_t m_rt) {
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  const int64_t m = MT > 0 ? MT : m_rt;
  I gt[MT > 0 ? MT : kMaxM];
#pragma GCC unroll 32
  for (int64_t k = 0; k < m; ++k) gt[k] = x > bpv[k];
  V a = lvv[0];
#pragma GCC unroll 32
  for (int64_t k = 0; k < m; ++k) a = S::sel(gt[k], lvv[k + 1], a);
  const V p = S::drop((a == S::zero()) & S::isinf(x), g * x);
  acc[0] += S::drop(gt[0], p);
#pragma GCC unroll 32
  for (int64_t k = 1; k < m; ++k) acc[k] += S::keep(gt[k - 1] & ~gt[k], p);
  acc[m] += S::keep(gt[m - 1], p);
  return a * g;
}

// ---------------------------------------------------------------- rows layout (inner > 1)

template <typename T, int MT>
void fwd_rows(const KernelArgs& A, int64_t t0, int64_t t1) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  const int64_t m = MT > 0 ? MT : A.m, b = A.b, C = A.C, inner = A.inner, W = 2 * b + 1;
  const T* x = static_cast<const T*>(A.x);
  T* out = static_cast<T*>(A.out);
  const T* bp = static_cast<const T*>(A.bp);
  const T* lv = static_cast<const T*>(A.lv);
  V bpv[MT > 0 ? MT : kMaxM], lvv[MT > 0 ? MT + 1 : kMaxM + 1];
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t sb = t % A.n_sb, rest = t / A.n_sb, i = rest % C, ob = rest / C;
    const int64_t s0 = sb * A.sblock, s1 = std::min(inner, s0 + A.sblock);
    const int64_t o0 = ob * A.oblock, o1 = std::min(A.outer, o0 + A.oblock);
    const int64_t dlo = std::max(-b, -i), dhi = std::min(b, C - 1 - i);
    for (int64_t d = dlo; d <= dhi; ++d) {
      const int64_t j = i + d;
      for (int64_t k = 0; k < m; ++k) bpv[k] = S::bc(bp[j * m + k]);
      for (int64_t k = 0; k <= m; ++k) lvv[k] = S::bc(lv[(i * W + d + b) * (m + 1) + k]);
      const bool first = d == dlo;
      for (int64_t o = o0; o < o1; ++o) {
        const T* xr = x + (o * C + j) * inner;
        T* yr = out + (o * C + i) * inner;
        int64_t s = s0;
        for (; s + L <= s1; s += L) {
          V y = term_of<T, MT>(S::load(xr + s), bpv, lvv, m);
          if (!first) y += S::load(yr + s);
          S::store(yr + s, y);
        }
        if (s < s1) {
          V y = term_of<T, MT>(S::loadw(xr, s, s1), bpv, lvv, m);
          if (!first) y += S::loadw(yr, s, s1);
          S::storew(yr, s, s1, y);
        }
      }
    }
  }
}

template <typename T, int MT>
void bwd_rows(const KernelArgs& A, int64_t t0, int64_t t1) {
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  constexpr int L = S::L;
  const int64_t m = MT > 0 ? MT : A.m, b = A.b, C = A.C, inner = A.inner, W = 2 * b + 1;
  const T* x = static_cast<const T*>(A.x);
  const T* g = static_cast<const T*>(A.g);
  T* gx = static_cast<T*>(A.gx);
  T* partial = static_cast<T*>(A.partial);
  const T* bp = static_cast<const T*>(A.bp);
  const T* lv = static_cast<const T*>(A.lv);
  V bpv[MT > 0 ? MT : kMaxM], lvv[MT > 0 ? MT + 1 : kMaxM + 1], acc[MT > 0 ? MT + 1 : kMaxM + 1];
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t sb = t % A.n_sb, rest = t / A.n_sb, j = rest % C, ob = rest / C;
    const int64_t s0 = sb * A.sblock, s1 = std::min(inner, s0 + A.sblock);
    const int64_t o0 = ob * A.oblock, o1 = std::min(A.outer, o0 + A.oblock);
    const int64_t dlo = std::max(-b, j - (C - 1)), dhi = std::min(b, j);  // i = j - d in 0..C-1
    for (int64_t k = 0; k < m; ++k) bpv[k] = S::bc(bp[j * m + k]);
    for (int64_t d = dlo; d <= dhi; ++d) {
      const int64_t i = j - d;
      for (int64_t k = 0; k <= m; ++k) lvv[k] = S::bc(lv[(i * W + d + b) * (m + 1) + k]);
      for (int64_t k = 0; k <= m; ++k) acc[k] = S::zero();
      I nan = I{};
      const bool first = d == dlo, last = d == dhi;
      for (int64_t o = o0; o < o1; ++o) {
        const T* xr = x + (o * C + j) * inner;
        const T* gr = g + (o * C + i) * inner;
        T* gxr = gx + (o * C + j) * inner;
        int64_t s = s0;
        for (; s + L <= s1; s += L) {
          const V xv = S::load(xr + s);
          V v = bwd_step<T, MT>(xv, S::load(gr + s), bpv, lvv, acc, m);
          if (!first) v += S::load(gxr + s);
          const I bad = S::isnan(xv);
          if (last) v = S::sel(bad, xv, v);
          nan |= bad;
          S::store(gxr + s, v);
        }
        if (s < s1) {
          const V xv = S::loadw(xr, s, s1);
          V v = bwd_step<T, MT>(xv, S::loadw(gr, s, s1), bpv, lvv, acc, m);
          if (!first) v += S::loadw(gxr, s, s1);
          const I bad = S::isnan(xv);
          if (last) v = S::sel(bad, xv, v);
          nan |= bad;
          S::storew(gxr, s, s1, v);
        }
      }
      T* part = partial + (t * W + d + b) * (m + 1);
      const bool has_nan = S::any(nan);
      for (int64_t k = 0; k <= m; ++k)
        part[k] = has_nan ? std::numeric_limits<T>::quiet_NaN() : S::hsum(acc[k]);
    }
  }
}

// ------------------------------------------------------------ columns layout (inner == 1)

template <typename T, int MT>
void fwd_cols(const KernelArgs& A, int64_t t0, int64_t t1) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  const int64_t m = MT > 0 ? MT : A.m, b = A.b, C = A.C, ldt = A.ldt;
  const T* x = static_cast<const T*>(A.x);
  T* out = static_cast<T*>(A.out);
  const T* bp = static_cast<const T*>(A.bp);
  const T* lv = static_cast<const T*>(A.lv);
  V bpv[MT > 0 ? MT : kMaxM], lvv[MT > 0 ? MT + 1 : kMaxM + 1];
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t rb = t / A.n_cb, cb = t % A.n_cb;
    const int64_t r0 = rb * A.rblock, r1 = std::min(A.outer, r0 + A.rblock);
    const int64_t c0 = cb * A.cblock, c1 = std::min(C, c0 + A.cblock);
    for (int64_t i0 = c0; i0 < c1; i0 += L) {
      bool first = true;
      for (int64_t d = -b; d <= b; ++d) {
        if (i0 + L - 1 + d < 0 || i0 + d > C - 1) continue;  // no lane reads a channel
        for (int64_t k = 0; k < m; ++k) bpv[k] = S::load(bp + k * ldt + i0 + d + b);
        for (int64_t k = 0; k <= m; ++k) lvv[k] = S::load(lv + ((d + b) * (m + 1) + k) * ldt + i0 + b);
        for (int64_t r = r0; r < r1; ++r) {
          const T* xr = x + r * C;
          T* yr = out + r * C;
          V y = term_of<T, MT>(S::loadw(xr, i0 + d, C), bpv, lvv, m);
          if (!first) y += S::loadw(yr, i0, C);
          S::storew(yr, i0, C, y);
        }
        first = false;
      }
    }
  }
}

template <typename T, int MT>
void bwd_cols(const KernelArgs& A, int64_t t0, int64_t t1) {
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  constexpr int L = S::L;
  const int64_t m = MT > 0 ? MT : A.m, b = A.b, C = A.C, ldt = A.ldt, W = 2 * b + 1;
  const T* x = static_cast<const T*>(A.x);
  const T* g = static_cast<const T*>(A.g);
  T* gx = static_cast<T*>(A.gx);
  T* partial = static_cast<T*>(A.partial);
  const T* bp = static_cast<const T*>(A.bp);
  const T* lv = static_cast<const T*>(A.lv);
  V bpv[MT > 0 ? MT : kMaxM], lvv[MT > 0 ? MT + 1 : kMaxM + 1], acc[MT > 0 ? MT + 1 : kMaxM + 1];
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t rb = t / A.n_cb, cb = t % A.n_cb;
    const int64_t r0 = rb * A.rblock, r1 = std::min(A.outer, r0 + A.rblock);
    const int64_t c0 = cb * A.cblock, c1 = std::min(C, c0 + A.cblock);
    for (int64_t j0 = c0; j0 < c1; j0 += L) {
      for (int64_t k = 0; k < m; ++k) bpv[k] = S::load(bp + k * ldt + j0 + b);
      int64_t dlo = b + 1, dhi = -b - 1;  // offsets with at least one valid lane i = j - d
      for (int64_t d = -b; d <= b; ++d) {
        if (j0 + L - 1 - d < 0 || j0 - d > C - 1) continue;
        dlo = std::min(dlo, d);
        dhi = std::max(dhi, d);
      }
      for (int64_t d = dlo; d <= dhi; ++d) {
        for (int64_t k = 0; k <= m; ++k) lvv[k] = S::load(lv + ((d + b) * (m + 1) + k) * ldt + j0 + b);
        for (int64_t k = 0; k <= m; ++k) acc[k] = S::zero();
        I nan = I{};
        const bool first = d == dlo, last = d == dhi;
        for (int64_t r = r0; r < r1; ++r) {
          const V xv = S::loadw(x + r * C, j0, C);
          V v = bwd_step<T, MT>(xv, S::loadw(g + r * C, j0 - d, C), bpv, lvv, acc, m);
          T* gxr = gx + r * C;
          if (!first) v += S::loadw(gxr, j0, C);
          const I bad = S::isnan(xv);
          if (last) v = S::sel(bad, xv, v);
          nan |= bad;
          S::storew(gxr, j0, C, v);
        }
        T* part = partial + ((rb * W + d + b) * (m + 1)) * ldt + j0 + b;
        for (int64_t k = 0; k <= m; ++k) S::store(part + k * ldt, acc[k]);
        if (S::any(nan))  // NaN in a lane: every level gradient of that input channel is NaN
          for (int l = 0; l < L; ++l)
            if (nan[l])
              for (int64_t k = 0; k <= m; ++k) part[k * ldt + l] = std::numeric_limits<T>::quiet_NaN();
      }
    }
  }
}

}  // namespace TMAF_ISA_NS
}  // namespace tmaf_native
