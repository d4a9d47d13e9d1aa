// The tmaf operator library: schemas (TORCH_LIBRARY), the CPU implementation
// (TORCH_LIBRARY_IMPL), layout handling, task geometry, parallel loop and the ordered
// reduction of the level gradient. The arithmetic lives in kernels_impl.h, built per ISA.
// Definitions: docs/method.md.
#include <Python.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "kernels.h"

namespace tmaf_native {
namespace {

using at::Tensor;

// ------------------------------------------------------------------------ ISA dispatch

enum Isa : int { kDefault = 0, kAvx2 = 1, kAvx512 = 2, kNumIsa = 3 };
const char* kIsaNames[kNumIsa] = {"default", "avx2", "avx512"};

bool cpu_supports(int isa) {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  switch (isa) {
    case kDefault: return __builtin_cpu_supports("sse4.2");
    case kAvx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }
  return false;
#else
  return isa == kDefault;
#endif
}

const KernelSet& kernel_set(int isa) {
  static KernelSet sets[kNumIsa];
  static bool filled = [] {  // only the ISAs this CPU runs
    if (cpu_supports(kDefault)) fill_kernels_default(&sets[kDefault]);
#if defined(__x86_64__) || defined(_M_X64)
    if (cpu_supports(kAvx2)) fill_kernels_avx2(&sets[kAvx2]);
    if (cpu_supports(kAvx512)) fill_kernels_avx512(&sets[kAvx512]);
#endif
    return true;
  }();
  (void)filled;
  return sets[isa];
}

int best_isa() {
  for (int isa = kNumIsa - 1; isa >= 0; --isa)
    if (cpu_supports(isa) && kernel_set(isa).isa != nullptr) return isa;
  return -1;
}

int isa_from_name(const std::string& name) {
  for (int isa = 0; isa < kNumIsa; ++isa)
    if (name == kIsaNames[isa]) return isa;
  TORCH_CHECK(false, "tmaf: unknown ISA '", name, "'; expected one of default, avx2, avx512");
}

// Active ISA: the best the CPU supports, capped by TMAF_CPU_ISA when set.
int initial_isa() {
  int isa = best_isa();
  if (const char* env = std::getenv("TMAF_CPU_ISA"); env != nullptr && *env != '\0') {
    const int cap = isa_from_name(env);
    isa = std::min(isa, cap);
  }
  return isa;
}

std::atomic<int>& active_isa() {
  static std::atomic<int> isa{initial_isa()};
  return isa;
}

const KernelSet& kernels() {
  const int isa = active_isa().load();
  TORCH_CHECK(isa >= 0, "tmaf: this CPU lacks the vector instructions the native kernels need "
              "(SSE4.2 on x86-64); use the 'eager' or 'compiled' backend");
  return kernel_set(isa);
}

std::string native_isa() {
  const int isa = active_isa().load();
  return isa < 0 ? std::string("none") : std::string(kIsaNames[isa]);
}

// Selects the kernels of one ISA (tests run every ISA the CPU has); returns the previous one.
std::string set_native_isa(const std::string& name) {
  const int isa = isa_from_name(name);
  TORCH_CHECK(cpu_supports(isa) && kernel_set(isa).isa != nullptr,
              "tmaf: this CPU does not support the '", name, "' kernels");
  const std::string prev = native_isa();
  active_isa().store(isa);
  return prev;
}

std::vector<std::string> native_isas() {  // every ISA this CPU can run, best last
  std::vector<std::string> out;
  for (int isa = 0; isa < kNumIsa; ++isa)
    if (cpu_supports(isa) && kernel_set(isa).isa != nullptr) out.emplace_back(kIsaNames[isa]);
  return out;
}

// ------------------------------------------------------------------------- validation

struct Shape {
  int64_t cd, C, m, b, W, outer, inner;
  at::ScalarType ct;  // compute dtype
};

Shape check_args(const Tensor& x, const Tensor& bp, const Tensor& lv, int64_t channel_dim) {
  TORCH_CHECK(x.is_floating_point(), "tmaf: expected a floating-point input, got dtype ", x.scalar_type());
  TORCH_CHECK(x.dim() >= 1, "tmaf: expected an input with a channel dimension, got a 0-d tensor");
  TORCH_CHECK(channel_dim >= -x.dim() && channel_dim < x.dim(), "tmaf: channel_dim=", channel_dim,
              " is out of range for an input with ", x.dim(), " dims");
  TORCH_CHECK(bp.is_floating_point() && lv.is_floating_point(),
              "tmaf: breakpoints and levels must be floating point, got ", bp.scalar_type(), " and ",
              lv.scalar_type());
  TORCH_CHECK(x.device().is_cpu() && bp.device().is_cpu() && lv.device().is_cpu(),
              "tmaf: the native CPU kernels need CPU tensors, got ", x.device(), ", ", bp.device(),
              ", ", lv.device());
  Shape s{};
  s.cd = channel_dim < 0 ? channel_dim + x.dim() : channel_dim;
  s.C = x.size(s.cd);
  TORCH_CHECK(bp.dim() == 1 || (bp.dim() == 2 && bp.size(0) == s.C),
              "tmaf: breakpoints must have shape (m,) or (C, m) with C = ", s.C, ", got ", bp.sizes());
  s.m = bp.size(-1);
  TORCH_CHECK(s.m >= 1 && s.m <= kMaxM, "tmaf: the native kernels take 1..", kMaxM,
              " breakpoints, got m = ", s.m);
  TORCH_CHECK(lv.dim() == 3 && lv.size(0) == s.C && lv.size(2) == s.m + 1 && lv.size(1) % 2 == 1,
              "tmaf: levels must have shape (C, 2b+1, m+1) = (", s.C, ", 2b+1, ", s.m + 1, "), got ",
              lv.sizes());
  s.W = lv.size(1);
  s.b = s.W / 2;
  TORCH_CHECK(s.b <= std::max<int64_t>(s.C - 1, 0), "tmaf: bandwidth b = ", s.b, " exceeds C-1 = ", s.C - 1);
  s.outer = 1;
  for (int64_t d = 0; d < s.cd; ++d) s.outer *= x.size(d);
  s.inner = 1;
  for (int64_t d = s.cd + 1; d < x.dim(); ++d) s.inner *= x.size(d);
  s.ct = at::promote_types(at::promote_types(x.scalar_type(), lv.scalar_type()), bp.scalar_type());
  s.ct = at::promote_types(s.ct, at::kFloat);
  return s;
}

// ------------------------------------------------------------------------------ layout

// How a tensor shaped like x is laid out for the kernels: rows (outer, C, inner) contiguous,
// or columns (outer', C) with the channel axis innermost (channels-last); `permuted` is the
// tensor moved to that layout (a view, no copy, when x already has it).
struct Layout {
  bool cols;
  int64_t outer;
};

Layout layout_of(const Tensor& x, const Shape& s) {
  if (x.is_contiguous()) return {s.inner == 1, s.outer};
  if (x.movedim(s.cd, -1).is_contiguous()) return {true, s.outer * s.inner};
  return {s.inner == 1, s.outer};  // copied to contiguous
}

// x (or a tensor shaped like it) as a dense buffer in the layout `lay`, in dtype ct.
Tensor in_layout(const Tensor& t, const Shape& s, const Layout& lay) {
  Tensor u = t.scalar_type() == s.ct ? t : t.to(s.ct);
  if (lay.cols && s.inner != 1) return u.movedim(s.cd, -1).contiguous();  // channels-last view
  return u.contiguous();
}

// A new tensor shaped like x with the memory arrangement the kernels write (mirrored by the
// fake implementation in tmaf/_native.py).
Tensor empty_in_layout(const Tensor& x, const Shape& s, const Layout& lay, at::ScalarType dt) {
  if (lay.cols && s.inner != 1)
    return at::empty(x.movedim(s.cd, -1).sizes(), x.options().dtype(dt)).movedim(-1, s.cd);
  return at::empty(x.sizes(), x.options().dtype(dt).memory_format(at::MemoryFormat::Contiguous));
}

// Writes the kernels' result (dtype ct, layout lay) into a tensor of x's dtype.
Tensor finish(Tensor r, const Tensor& x, const Shape& s, const Layout& lay) {
  if (r.scalar_type() == x.scalar_type()) return r;
  Tensor out = empty_in_layout(x, s, lay, x.scalar_type());
  out.copy_(r);
  return out;
}

// --------------------------------------------------------------------------- tables

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
Tensor rows_breakpoints(const Tensor& bp, const Shape& s) {  // (C, m)
  return bp.to(s.ct).expand({s.C, s.m}).contiguous();
}

// A per-thread scratch buffer, reused across calls (grown, never shrunk), for what a call
// builds and drops: the columns tables (Slot 0) and the level-gradient partial sums (Slot 1).
// The call that fills it is synchronous, its parallel tasks only read or write it meanwhile.
template <typename T, int Slot>
T* scratch(int64_t n) {
  thread_local std::vector<T> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(n);
  return buf.data();
}

// Column-layout table (see kernels.h), blocked per vector of L channels, in scratch slot 0.
// A defined `ic` (intercepts, forward of the continuous form) adds m+1 intercepts per offset.
template <typename T>
const T* cols_table(const Tensor& bp, const Tensor& lv, const Tensor& ic, const Shape& s, int64_t L,
                    bool backward) {
  const Tensor bpc = bp.to(s.ct).contiguous();  // (m,) or (C, m)
  const Tensor lvc = lv.to(s.ct).contiguous();
  const bool aff = ic.defined() && !backward;
  const Tensor icc = aff ? ic.to(s.ct).contiguous() : Tensor();
  const int64_t m = s.m, m1 = s.m + 1, b = s.b, W = s.W, C = s.C, n_vec = ceil_div(C, L);
  const int64_t per_d = 2 * m + 1 + (aff ? m1 : 0);
  const int64_t blk = backward ? m + W * m1 : W * per_d;
  const int64_t bp_stride = bpc.dim() == 2 ? m : 0;  // shared breakpoints: one row for all
  T* tp = scratch<T, 0>(n_vec * blk * L);
  std::fill(tp, tp + n_vec * blk * L, T(0));
  const T* bps = bpc.data_ptr<T>();
  const T* lvs = lvc.data_ptr<T>();
  const T* ics = aff ? icc.data_ptr<T>() : nullptr;
  for (int64_t v = 0; v < n_vec; ++v) {
    T* tv = tp + v * blk * L;
    const int64_t lanes = std::min<int64_t>(L, C - v * L);
    for (int64_t l = 0; l < lanes; ++l) {
      const int64_t c = v * L + l;  // input channel j (backward) or output channel i (forward)
      if (backward) {
        for (int64_t k = 0; k < m; ++k) tv[k * L + l] = bps[c * bp_stride + k];
        for (int64_t d = -b; d <= b; ++d) {
          const int64_t i = c - d;
          if (i < 0 || i >= C) continue;
          const T* src = lvs + (i * W + d + b) * m1;
          T* dst = tv + (m + (d + b) * m1) * L + l;
          for (int64_t k = 0; k < m1; ++k) dst[k * L] = src[k];
        }
      } else {
        for (int64_t d = -b; d <= b; ++d) {
          const int64_t j = c + d;
          if (j < 0 || j >= C) continue;
          T* dst = tv + (d + b) * per_d * L + l;
          for (int64_t k = 0; k < m; ++k) dst[k * L] = bps[j * bp_stride + k];
          const T* src = lvs + (c * W + d + b) * m1;
          for (int64_t k = 0; k < m1; ++k) dst[(m + k) * L] = src[k];
          if (aff) {
            const T* isrc = ics + (c * W + d + b) * m1;
            for (int64_t k = 0; k < m1; ++k) dst[(2 * m + 1 + k) * L] = isrc[k];
          }
        }
      }
    }
  }
  return tp;
}

// The columns layout's banded level lookup, TMAF_COLS_LOOKUP (read at every call):
//  "transpose" (the default): 8 x 8 tiles turned into one channel per vector, the level one
//      register shuffle (kernels_impl.h, Tile8); where the kernels have it (float with 8 lanes,
//      avx2), 1 <= b <= kUniformMaxB and m + 1 <= 16; elsewhere the chains;
//  "chain": the blocked tables' compare chains;
//  "index": the per-lane index and one gather per term (cols_grid).
// Measured with avx2 on AMD Zen 3: docs/benchmarks.md.
std::string cols_lookup() {
  const char* env = std::getenv("TMAF_COLS_LOOKUP");
  if (env == nullptr || *env == '\0') return "transpose";
  const std::string v(env);
  TORCH_CHECK(v == "transpose" || v == "index" || v == "chain",
              "tmaf: TMAF_COLS_LOOKUP must be 'transpose', 'index' or 'chain', got '", v, "'");
  return v;
}

// Whether a columns-layout call of compute dtype index dt runs the 8 x 8 tile kernels.
bool cols_transposed(const KernelSet& ks, const Shape& s, int dt) {
  return ks.cols_transposed && dt == 0 && s.b >= 1 && s.b <= kUniformMaxB && s.m + 1 <= 16 &&
         cols_lookup() == "transpose";
}

// The tile kernels' level table (kernels_impl.h, Tile8) in scratch slot 0: forward (C, W, Q),
// per output channel i and offset d the levels[i, d+b, :] padded to 16, then with `ic` the
// intercepts alike (Q = 32); backward (C, W, 16), per input channel j the levels[j-d, d+b, :].
// Entries of terms outside the matrix are 0.
template <typename T>
const T* tile_table(const Tensor& lv, const Tensor& ic, const Shape& s, bool backward) {
  const Tensor lvc = lv.to(s.ct).contiguous();
  const bool aff = ic.defined() && !backward;
  const Tensor icc = aff ? ic.to(s.ct).contiguous() : Tensor();
  const int64_t C = s.C, W = s.W, b = s.b, m1 = s.m + 1, Q = aff ? 32 : 16;
  T* tp = scratch<T, 0>(C * W * Q);
  std::fill(tp, tp + C * W * Q, T(0));
  const T* lvs = lvc.data_ptr<T>();
  const T* ics = aff ? icc.data_ptr<T>() : nullptr;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t d = -b; d <= b; ++d) {
      const int64_t i = backward ? c - d : c;  // the term's output channel
      if (i < 0 || i >= C || i + d < 0 || i + d >= C) continue;
      T* dst = tp + (c * W + d + b) * Q;
      std::copy(lvs + (i * W + d + b) * m1, lvs + (i * W + d + b + 1) * m1, dst);
      if (aff) std::copy(ics + (i * W + d + b) * m1, ics + (i * W + d + b + 1) * m1, dst + 16);
    }
  return tp;
}

// The tile kernels' channel block: a multiple of 8 channels whose tables (and, backward, the
// per-row-lane sums) fit `budget` bytes.
int64_t tile_block(const Shape& s, int64_t per_channel, int64_t budget) {
  const int64_t c = std::max<int64_t>(8, (budget / per_channel) / 8 * 8);
  return std::min<int64_t>(std::min<int64_t>(c, kTileMaxBlock), (s.C + 7) / 8 * 8);
}

// The uniform-index grids of the columns layout (kernels.h, KernelArgs::grid) in scratch slot 2:
// per channel s_0, 1/h and its breakpoints followed by NaN; nullptr unless TMAF_COLS_LOOKUP=index
// (cols_lookup), where the band is outside 1..kUniformMaxB, some channel's breakpoints are not
// evenly spaced, or the gathers' 32-bit offsets would not fit (then the blocked tables and their
// compare chains).
template <typename T>
const T* cols_grid(const Tensor& bp, const Shape& s) {
  const int64_t C = s.C, m = s.m, m1 = s.m + 1;
  if (cols_lookup() != "index") return nullptr;
  if (s.b < 1 || s.b > kUniformMaxB || m < 2 || C * s.W * m1 >= (int64_t(1) << 31)) return nullptr;
  const Tensor bpc = bp.to(s.ct).contiguous();  // (m,) or (C, m)
  const int64_t stride = bpc.dim() == 2 ? m : 0;
  const T* bps = bpc.data_ptr<T>();
  T* grid = scratch<T, 2>(C * (m1 + 2));
  for (int64_t c = 0; c < C; ++c) {
    const T* sc = bps + c * stride;
    T inv_h;
    if (!evenly_spaced(sc, m, &inv_h)) return nullptr;
    grid[c] = sc[0];
    grid[C + c] = inv_h;
    std::copy(sc, sc + m, grid + 2 * C + c * m1);
    grid[2 * C + c * m1 + m] = std::numeric_limits<T>::quiet_NaN();
  }
  return grid;
}

int variant_of(int64_t m) {
  for (int v = 1; v < kNumVariants; ++v)
    if (kSpecialisedM[v] == m) return v;
  return 0;
}

constexpr int64_t kTaskElems = 4096;   // elements per task, at least
constexpr int64_t kL1Budget = 16384;   // bytes of tables and partial sums a columns task touches

// Rows geometry: inner blocks of at most 16384; outer blocks only when rows are short, so a
// task holds enough elements that the partial sums stay under 1/16 of the data. Tasks in
// index order walk memory in order. Depends on the shape only, never on the thread count.
void rows_geometry(KernelArgs* a, const Shape& s, int64_t outer) {
  a->sblock = s.inner <= 16384 ? s.inner : 8192;
  a->n_sb = ceil_div(s.inner, a->sblock);
  const int64_t want = 16 * s.W * (s.m + 1);
  a->oblock = std::min<int64_t>(std::max<int64_t>(1, ceil_div(want, a->sblock)), std::max<int64_t>(outer, 1));
}

// Columns geometry: a multiple of 16 channels whose tables (and partial sums) fit the budget;
// `uniform`: the levels (C, W, m+1), intercepts and grids of the uniform-index kernels.
int64_t cols_block(const Shape& s, int64_t elem_bytes, bool backward, bool aff, bool uniform) {
  const int64_t m1 = s.m + 1;
  const int64_t per_channel =
      uniform ? elem_bytes * (m1 + 2 + s.W * m1 * (backward ? (aff ? 3 : 2) : (aff ? 2 : 1)))
              : elem_bytes * (backward ? s.m + s.W * m1 * (aff ? 3 : 2) : s.W * (2 * s.m + 1 + (aff ? m1 : 0)));
  const int64_t c = std::max<int64_t>(16, (kL1Budget / per_channel) / 16 * 16);
  return std::min<int64_t>(std::min<int64_t>(c, kMaxColsBlock), ceil_div(s.C, 16) * 16);
}

// ------------------------------------------------------------- the continuous form
// On interval k its term is a_k t + c_k (docs/method.md section 6). With z = #{s_q < 0} of the
// input channel's breakpoints s and delta_q = (a_q - a_{q+1}) s_q: c_z = 0,
// c_k = sum_{z <= q < k} delta_q (k > z), c_k = -sum_{k <= q < z} delta_q (k < z); each sum is
// taken directly from z outwards, so unchanged slopes (and a change at 0) add an exact 0.

int64_t zero_interval(const double* s, int64_t m) {
  int64_t z = 0;
  while (z < m && s[z] < 0) ++z;
  return z;
}

// The intercepts (C, W, m+1) in dtype T from breakpoints bpt (C, m) and levels lvt (C, W, m+1),
// both contiguous in T; entries outside the band stay 0.
template <typename T>
Tensor cont_intercepts(const Tensor& bpt, const Tensor& lvt, const Shape& s) {
  const int64_t C = s.C, W = s.W, b = s.b, m = s.m, m1 = s.m + 1;
  Tensor ic = at::zeros({C, W, m1}, lvt.options());
  const T* bp = bpt.data_ptr<T>();
  const T* lv = lvt.data_ptr<T>();
  T* out = ic.data_ptr<T>();
  std::vector<double> sd(m);
  for (int64_t i = 0; i < C; ++i)
    for (int64_t d = -b; d <= b; ++d) {
      const int64_t j = i + d;
      if (j < 0 || j >= C) continue;
      const T* sj = bp + j * m;
      const T* a = lv + (i * W + d + b) * m1;
      T* c = out + (i * W + d + b) * m1;
      for (int64_t q = 0; q < m; ++q) sd[q] = static_cast<double>(sj[q]);
      const int64_t z = zero_interval(sd.data(), m);
      T acc = T(0);
      for (int64_t k = z + 1; k <= m; ++k) {
        acc += (a[k - 1] - a[k]) * sj[k - 1];
        c[k] = acc + T(0);
      }
      acc = T(0);
      for (int64_t k = z - 1; k >= 0; --k) {
        acc += (a[k] - a[k + 1]) * sj[k];
        c[k] = T(0) - acc;
      }
    }
  return ic;
}

// The level gradient of one continuous term from its interval sums: direct[k] = sum of g t over
// interval k, gsum[k] = sum of g there (the intercept gradient), s its input channel's
// breakpoints. d c_k / d a_j = s_j [z <= j < k] - s_{j-1} [z < j <= k] (k > z) and
// -s_j [k <= j < z] + s_{j-1} [k < j <= z] (k < z), so with R(j) = sum_{k >= j} gsum and
// L(j) = sum_{k <= j} gsum the chain adds s_j R(j+1) - s_{j-1} R(j) on z's right and
// -s_j L(j) + s_{j-1} L(j-1) on its left. out[j] = direct[j] + that, all in double.
void cont_level_grad(const double* direct, const double* gsum, const double* s, int64_t m, double* out) {
  const int64_t z = zero_interval(s, m), m1 = m + 1;
  std::vector<double> R(m1 + 1, 0.0), L(m1, 0.0);
  for (int64_t k = m; k >= 0; --k) R[k] = R[k + 1] + gsum[k];
  for (int64_t k = 0; k <= m; ++k) L[k] = (k > 0 ? L[k - 1] : 0.0) + gsum[k];
  for (int64_t j = 0; j <= m; ++j) {
    double v = direct[j];
    if (j >= z && j <= m - 1) v += s[j] * R[j + 1];
    if (j >= z + 1) v -= s[j - 1] * R[j];
    if (j <= z - 1) v -= s[j] * L[j];
    if (j >= 1 && j <= z) v += s[j - 1] * L[j - 1];
    out[j] = v;
  }
}

// aff: the continuous form (affine terms, the intercept table built here), else the jump form.
template <typename T>
Tensor fwd_impl(const Tensor& x, const Tensor& bp, const Tensor& lv, bool aff, const Shape& s) {
  const Layout lay = layout_of(x, s);
  const Tensor xc = in_layout(x, s, lay);
  Tensor out = empty_in_layout(x, s, lay, s.ct);
  const KernelSet& ks = kernels();
  const int dt = std::is_same<T, double>::value ? 1 : 0, v = variant_of(s.m);
  const int form = aff ? 1 : 0;
  const Tensor ic = aff ? cont_intercepts<T>(rows_breakpoints<T>(bp, s), lv.to(s.ct).contiguous(), s)
                        : Tensor();
  KernelArgs a;
  a.x = xc.data_ptr<T>();
  a.out = out.data_ptr<T>();
  a.C = s.C; a.b = s.b; a.m = s.m;
  Tensor bpt, lvt, ict;
  TaskFn fn;
  int64_t ntask;
  if (!lay.cols) {
    a.outer = lay.outer; a.inner = s.inner;
    bpt = rows_breakpoints<T>(bp, s);
    lvt = lv.to(s.ct).contiguous();
    a.bp = bpt.data_ptr<T>();
    a.lv = lvt.data_ptr<T>();
    if (aff) {
      ict = ic.to(s.ct).contiguous();
      a.ic = ict.data_ptr<T>();
    }
    rows_geometry(&a, s, lay.outer);
    ntask = ceil_div(lay.outer, a.oblock) * s.C * a.n_sb;
    fn = ks.fwd_rows[form][dt][v];
  } else {
    a.outer = lay.outer; a.inner = 1;
    a.lanes = ks.lanes[dt];
    a.transposed = cols_transposed(ks, s, dt);
    if (a.transposed) {  // per-channel breakpoints and the tile table; rows in groups of 8
      bpt = rows_breakpoints<T>(bp, s);
      a.bp = bpt.data_ptr<T>();
      a.lv = tile_table<T>(lv, ic, s, /*backward=*/false);
      a.cblock = tile_block(s, sizeof(T) * (s.m + s.W * (aff ? 32 : 16)), 2 * kL1Budget);
      a.rblock = ceil_div(std::max<int64_t>(1, ceil_div(kTaskElems, std::min(s.C, a.cblock))), 8) * 8;
    } else {
      a.grid = cols_grid<T>(bp, s);
      if (a.grid != nullptr) {  // levels and intercepts as they are, looked up per lane
        lvt = lv.to(s.ct).contiguous();
        a.lv = lvt.data_ptr<T>();
        if (aff) a.ic = ic.data_ptr<T>();
      } else {
        a.lv = a.bp = cols_table<T>(bp, lv, ic, s, a.lanes, /*backward=*/false);
      }
      a.cblock = cols_block(s, sizeof(T), /*backward=*/false, aff, a.grid != nullptr);
      a.rblock = std::max<int64_t>(1, ceil_div(kTaskElems, std::min(s.C, a.cblock)));
    }
    a.n_cb = ceil_div(s.C, a.cblock);
    ntask = ceil_div(lay.outer, a.rblock) * a.n_cb;
    fn = ks.fwd_cols[form][dt][v];
  }
  at::parallel_for(0, ntask, 1, [&](int64_t t0, int64_t t1) { fn(a, t0, t1); });
  return out;
}

// The ordered reduction of the level gradient: sums[i, d+b, k] = sum over parts q = 0, 1, ...
// (in this order, in float64) of part(q, j = i + d, d, k), written in the levels' dtype Out
// (slots outside the band are left as they are). Parallel over output channels only,
// so the result does not depend on the thread count.
template <typename Out, typename Part>
void reduce_partials(int64_t C, int64_t b, int64_t m1, int64_t n_parts, Out* sums, const Part& part) {
  const int64_t W = 2 * b + 1;
  at::parallel_for(0, C, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t d = -b; d <= b; ++d) {
        const int64_t j = i + d;
        if (j < 0 || j >= C) continue;
        for (int64_t k = 0; k < m1; ++k) {
          double acc = 0.0;
          for (int64_t q = 0; q < n_parts; ++q) acc += part(q, j, d, k);
          sums[(i * W + d + b) * m1 + k] = static_cast<Out>(acc);
        }
      }
  });
}

// The level gradient gl (C, W, m+1) from the kernels' partial sums part(q, j, d, k), q over
// n_parts in order: reduce_partials, or for the continuous form (aff) the level sums and the
// intercept sums (k + m+1) through cont_level_grad with the breakpoints bpd (C, m) in double.
template <typename Part>
void reduce_level_grad(Tensor& gl, const Tensor& bpd, const Shape& s, bool aff, int64_t n_parts, const Part& part) {
  const int64_t W = s.W, m1 = s.m + 1, b = s.b, C = s.C;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gl.scalar_type(), "tmaf_reduce", [&] {
    scalar_t* sums = gl.data_ptr<scalar_t>();
    if (!aff) {
      reduce_partials(C, b, m1, n_parts, sums, part);
      return;
    }
    const double* bps = bpd.data_ptr<double>();
    at::parallel_for(0, C, 1, [&](int64_t i0, int64_t i1) {
      std::vector<double> direct(m1), gsum(m1), out(m1);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t d = -b; d <= b; ++d) {
          const int64_t j = i + d;
          if (j < 0 || j >= C) continue;
          for (int64_t k = 0; k < m1; ++k) {
            double acc = 0.0, accg = 0.0;
            for (int64_t q = 0; q < n_parts; ++q) {
              acc += part(q, j, d, k);
              accg += part(q, j, d, m1 + k);
            }
            direct[k] = acc;
            gsum[k] = accg;
          }
          cont_level_grad(direct.data(), gsum.data(), bps + j * s.m, s.m, out.data());
          for (int64_t k = 0; k < m1; ++k) sums[(i * W + d + b) * m1 + k] = static_cast<scalar_t>(out[k]);
        }
    });
  });
}

// The backward kernels in the rows layout (a holds x, g, gx); the level gradient into gl.
template <typename T>
void bwd_rows_run(KernelArgs& a, const Tensor& bp, const Tensor& lv, const Shape& s, const Layout& lay,
                  TaskFn fn, bool aff, Tensor& gl, const Tensor& bpd) {
  const int64_t W = s.W, b = s.b, C = s.C, P = aff ? 2 * (s.m + 1) : s.m + 1;
  a.outer = lay.outer; a.inner = s.inner;
  const Tensor bpt = rows_breakpoints<T>(bp, s);
  const Tensor lvt = lv.to(s.ct).contiguous();
  rows_geometry(&a, s, lay.outer);
  const int64_t n_ob = ceil_div(lay.outer, a.oblock), ntask = n_ob * C * a.n_sb;
  T* p = scratch<T, 1>(ntask * W * P);
  a.partial = p;
  a.bp = bpt.data_ptr<T>();
  a.lv = lvt.data_ptr<T>();
  at::parallel_for(0, ntask, 1, [&](int64_t t0, int64_t t1) { fn(a, t0, t1); });
  const int64_t n_sb = a.n_sb, n_parts = n_ob * n_sb;
  // part q = (outer block, inner block) in task order; slot of input channel j, offset d, interval k
  reduce_level_grad(gl, bpd, s, aff, n_parts, [&](int64_t q, int64_t j, int64_t d, int64_t k) {
    const int64_t ob = q / n_sb, sb = q % n_sb;
    return static_cast<double>(p[((((ob * C + j) * n_sb + sb) * W) + d + b) * P + k]);
  });
}

// The backward kernels in the columns layout (a holds x, g, gx); the level gradient into gl.
template <typename T>
void bwd_cols_run(KernelArgs& a, const Tensor& bp, const Tensor& lv, const Shape& s, const Layout& lay,
                  TaskFn fn, int64_t L, bool aff, Tensor& gl, const Tensor& bpd) {
  const int64_t W = s.W, b = s.b, C = s.C, P = aff ? 2 * (s.m + 1) : s.m + 1, n_vec = ceil_div(C, L);
  a.outer = lay.outer; a.inner = 1;
  a.lanes = L;
  Tensor lvt, bpt;
  if (a.transposed) {  // per-channel breakpoints, the tile table, per-row-lane sums in the task
    bpt = rows_breakpoints<T>(bp, s);
    a.bp = bpt.data_ptr<T>();
    a.lv = tile_table<T>(lv, Tensor(), s, /*backward=*/true);
    a.cblock = tile_block(s, sizeof(T) * (s.m + W * 16 + W * P * 8), 4 * kL1Budget);
  } else {
    a.grid = cols_grid<T>(bp, s);
    if (a.grid != nullptr) {  // the levels as they are, looked up per lane
      lvt = lv.to(s.ct).contiguous();
      a.lv = lvt.data_ptr<T>();
    } else {
      a.lv = a.bp = cols_table<T>(bp, lv, Tensor(), s, L, /*backward=*/true);
    }
    a.cblock = cols_block(s, sizeof(T), /*backward=*/true, aff, a.grid != nullptr);
  }
  a.n_cb = ceil_div(C, a.cblock);
  a.rblock = ceil_div(std::max<int64_t>(ceil_div(kTaskElems, std::min(C, a.cblock)), 16 * W * P), 8) * 8;
  const int64_t n_rb = ceil_div(lay.outer, a.rblock), ntask = n_rb * a.n_cb;
  T* p = scratch<T, 1>(n_rb * n_vec * W * P * L);
  a.partial = p;
  at::parallel_for(0, ntask, 1, [&](int64_t t0, int64_t t1) { fn(a, t0, t1); });
  // part q = row block, in order; slot of input channel j, offset d, interval k
  reduce_level_grad(gl, bpd, s, aff, n_rb, [&](int64_t q, int64_t j, int64_t d, int64_t k) {
    return static_cast<double>(p[(((q * n_vec + j / L) * W + d + b) * P + k) * L + j % L]);
  });
}

// aff: the continuous form, whose level gradient adds the intercepts' part (section 6).
template <typename T>
std::tuple<Tensor, Tensor> bwd_impl(const Tensor& g, const Tensor& x, const Tensor& bp,
                                    const Tensor& lv, const Shape& s, bool aff) {
  const Layout lay = layout_of(x, s);
  const Tensor xc = in_layout(x, s, lay);
  const Tensor gc = in_layout(g, s, lay);
  Tensor gx = empty_in_layout(x, s, lay, s.ct);
  const KernelSet& ks = kernels();
  const int dt = std::is_same<T, double>::value ? 1 : 0, v = variant_of(s.m), form = aff ? 1 : 0;
  KernelArgs a;
  a.x = xc.data_ptr<T>();
  a.g = gc.data_ptr<T>();
  a.gx = gx.data_ptr<T>();
  a.C = s.C; a.b = s.b; a.m = s.m;
  Tensor gl = at::zeros({s.C, s.W, s.m + 1}, lv.options());
  const Tensor bpd = aff ? bp.to(at::kDouble).expand({s.C, s.m}).contiguous() : Tensor();
  if (!lay.cols) bwd_rows_run<T>(a, bp, lv, s, lay, ks.bwd_rows[form][dt][v], aff, gl, bpd);
  else {
    a.transposed = cols_transposed(ks, s, dt);
    bwd_cols_run<T>(a, bp, lv, s, lay, ks.bwd_cols[form][dt][v], ks.lanes[dt], aff, gl, bpd);
  }
  return {gx, gl};
}

// ------------------------------------------------------------------------------ ops

// The forward and backward of either form (aff: the continuous one).
Tensor forward_of(const Tensor& x, const Tensor& breakpoints, const Tensor& levels, int64_t channel_dim,
                  bool aff) {
  const Shape s = check_args(x, breakpoints, levels, channel_dim);
  const Layout lay = layout_of(x, s);
  if (x.numel() == 0) return empty_in_layout(x, s, lay, x.scalar_type());
  const Tensor r = s.ct == at::kDouble ? fwd_impl<double>(x, breakpoints, levels, aff, s)
                                       : fwd_impl<float>(x, breakpoints, levels, aff, s);
  return finish(r, x, s, lay);
}

std::tuple<Tensor, Tensor> backward_of(const Tensor& grad, const Tensor& x, const Tensor& breakpoints,
                                       const Tensor& levels, int64_t channel_dim, bool aff) {
  const Shape s = check_args(x, breakpoints, levels, channel_dim);
  TORCH_CHECK(grad.sizes() == x.sizes(), "tmaf: the upstream gradient must have the input's shape ",
              x.sizes(), ", got ", grad.sizes());
  TORCH_CHECK(grad.device().is_cpu(), "tmaf: the upstream gradient must be on the CPU, got ", grad.device());
  const Layout lay = layout_of(x, s);
  if (x.numel() == 0)
    return {empty_in_layout(x, s, lay, x.scalar_type()), at::zeros(levels.sizes(), levels.options())};
  auto [gx, gl] = s.ct == at::kDouble ? bwd_impl<double>(grad, x, breakpoints, levels, s, aff)
                                      : bwd_impl<float>(grad, x, breakpoints, levels, s, aff);
  return {finish(gx, x, s, lay), gl};
}

Tensor banded_fwd(const Tensor& x, const Tensor& breakpoints, const Tensor& levels, int64_t channel_dim) {
  return forward_of(x, breakpoints, levels, channel_dim, /*aff=*/false);
}

std::tuple<Tensor, Tensor> banded_bwd(const Tensor& grad, const Tensor& x, const Tensor& breakpoints,
                                      const Tensor& levels, int64_t channel_dim) {
  return backward_of(grad, x, breakpoints, levels, channel_dim, /*aff=*/false);
}

// The continuous form (docs/method.md section 6): the same arguments, the intercept table made
// from the levels inside the forward, and its part of the level gradient added in the backward.
Tensor banded_cont_fwd(const Tensor& x, const Tensor& breakpoints, const Tensor& levels, int64_t channel_dim) {
  return forward_of(x, breakpoints, levels, channel_dim, /*aff=*/true);
}

std::tuple<Tensor, Tensor> banded_cont_bwd(const Tensor& grad, const Tensor& x, const Tensor& breakpoints,
                                           const Tensor& levels, int64_t channel_dim) {
  return backward_of(grad, x, breakpoints, levels, channel_dim, /*aff=*/true);
}

// ------------------------------------------------------------------------ autograd

// The autograd formula of banded_fwd (Form 0) and banded_cont_fwd (Form 1), registered for the
// Autograd key so that a differentiable call is one dispatcher call: d x = the backward op's input
// gradient, d levels = its level gradient, none for the breakpoints (zero almost everywhere) or
// channel_dim. Only the input, breakpoints and levels are saved (like ReLU's one tensor).
// torch.compile / torch.export trace through it to the operators and their fake implementations
// (tmaf/_native.py).
constexpr const char* kFwdNames[2] = {"tmaf::banded_fwd", "tmaf::banded_cont_fwd"};
constexpr const char* kBwdNames[2] = {"tmaf::banded_bwd", "tmaf::banded_cont_bwd"};

template <int Form>
class BandedTmafFunction : public torch::autograd::Function<BandedTmafFunction<Form>> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x, const Tensor& breakpoints,
                        const Tensor& levels, int64_t channel_dim) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({x, breakpoints, levels});
    ctx->saved_data["channel_dim"] = channel_dim;
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow(kFwdNames[Form], "")
                               .typed<Tensor(const Tensor&, const Tensor&, const Tensor&, int64_t)>();
    return op.call(x, breakpoints, levels, channel_dim);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    // Under create_graph the backward op runs through its autograd formula (registered in
    // tmaf/_second_order.py), so a second backward reaches x, the levels and the upstream
    // gradient; otherwise there is no graph to record and the call skips that Python layer.
    std::optional<at::AutoDispatchBelowADInplaceOrView> no_graph;
    if (!at::GradMode::is_enabled()) no_graph.emplace();
    static const auto op =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow(kBwdNames[Form], "")
            .typed<std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t)>();
    auto [gx, gl] = op.call(grads[0], saved[0], saved[1], saved[2], ctx->saved_data["channel_dim"].toInt());
    return {ctx->needs_input_grad(0) ? gx : Tensor(), Tensor(), ctx->needs_input_grad(2) ? gl : Tensor(),
            Tensor()};
  }
};

Tensor banded_fwd_autograd(const Tensor& x, const Tensor& breakpoints, const Tensor& levels,
                           int64_t channel_dim) {
  return BandedTmafFunction<0>::apply(x, breakpoints, levels, channel_dim);
}

Tensor banded_cont_fwd_autograd(const Tensor& x, const Tensor& breakpoints, const Tensor& levels,
                                int64_t channel_dim) {
  return BandedTmafFunction<1>::apply(x, breakpoints, levels, channel_dim);
}

}  // namespace

// Which kernels a call with these arguments runs (the CPU operators, the active ISA and
// TMAF_COLS_LOOKUP): "rows" (channels outer), or with channels innermost "tile" (8 x 8 tiles),
// "index" (the per-lane index) or "chain" (the blocked tables' compare chains).
std::string kernel_family(const Tensor& x, const Tensor& breakpoints, const Tensor& levels, int64_t channel_dim) {
  const Shape s = check_args(x, breakpoints, levels, channel_dim);
  if (!layout_of(x, s).cols) return "rows";
  const int dt = s.ct == at::kDouble ? 1 : 0;
  if (cols_transposed(kernels(), s, dt)) return "tile";
  const bool index = dt == 1 ? cols_grid<double>(breakpoints, s) != nullptr : cols_grid<float>(breakpoints, s) != nullptr;
  return index ? "index" : "chain";
}

TORCH_LIBRARY(tmaf, m) {
  m.def("banded_fwd(Tensor x, Tensor breakpoints, Tensor levels, int channel_dim) -> Tensor");
  m.def("banded_bwd(Tensor grad, Tensor x, Tensor breakpoints, Tensor levels, int channel_dim) "
        "-> (Tensor, Tensor)");
  m.def("banded_cont_fwd(Tensor x, Tensor breakpoints, Tensor levels, int channel_dim) -> Tensor");
  m.def("banded_cont_bwd(Tensor grad, Tensor x, Tensor breakpoints, Tensor levels, int channel_dim) "
        "-> (Tensor, Tensor)");
  m.def("native_isa() -> str", &native_isa);
  m.def("kernel_family(Tensor x, Tensor breakpoints, Tensor levels, int channel_dim) -> str", &kernel_family);
  m.def("native_isas() -> str[]", &native_isas);
  m.def("set_native_isa(str isa) -> str", &set_native_isa);
}

TORCH_LIBRARY_IMPL(tmaf, CPU, m) {
  m.impl("banded_fwd", &banded_fwd);
  m.impl("banded_bwd", &banded_bwd);
  m.impl("banded_cont_fwd", &banded_cont_fwd);
  m.impl("banded_cont_bwd", &banded_cont_bwd);
}

TORCH_LIBRARY_IMPL(tmaf, Autograd, m) {
  m.impl("banded_fwd", &banded_fwd_autograd);
  m.impl("banded_cont_fwd", &banded_cont_fwd_autograd);
}

}  // namespace tmaf_native

// An importable module whose only job is to register the operators above on import.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "tmaf native operators (torch.ops.tmaf)", -1,
                            nullptr, nullptr, nullptr, nullptr, nullptr};
  return PyModule_Create(&def);
}
