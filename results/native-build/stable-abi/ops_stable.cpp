// The jump-form operators on the LibTorch stable ABI (torch/csrc/stable, torch >= 2.10), built
// only to measure that route against tmaf._C (results/native-build/stable-abi): the same kernels
// (kernels_*.cpp), the same task geometry and ordered level-gradient reduction as ops.cpp, for one
// case: float32 input (N, C), contiguous (the columns layout), breakpoints (m,) or (C, m), levels
// (C, 2b+1, m+1), float32. Anything else is refused. Autograd is registered in Python.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

#include "kernels.h"  // src/tmaf/csrc, on the include path (build.sh)

namespace tmaf_stable {
namespace {

using torch::headeronly::ScalarType;
using torch::stable::Tensor;
using namespace tmaf_native;

const KernelSet& kset() {  // the best of avx2 / default, as ops.cpp picks on a CPU without AVX-512
  static const KernelSet set = [] {
    KernelSet s;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      fill_kernels_avx2(&s);
      return s;
    }
#endif
    fill_kernels_default(&s);
    return s;
  }();
  return set;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int64_t kTaskElems = 4096;  // as ops.cpp
constexpr int64_t kL1Budget = 16384;

int variant_of(int64_t m) {
  for (int v = 1; v < kNumVariants; ++v)
    if (kSpecialisedM[v] == m) return v;
  return 0;
}

template <int Slot>
float* scratch(int64_t n) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(n);
  return buf.data();
}

struct Shape {
  int64_t N, C, m, W, b;
};

Shape check(const Tensor& x, const Tensor& bp, const Tensor& lv, int64_t channel_dim) {
  STD_TORCH_CHECK(x.is_cpu() && x.dim() == 2 && x.is_contiguous() && x.scalar_type() == ScalarType::Float,
                  "tmaf_stable: expected a contiguous float32 CPU input (N, C)");
  STD_TORCH_CHECK(channel_dim == 1 || channel_dim == -1, "tmaf_stable: channel_dim must be 1");
  STD_TORCH_CHECK(bp.scalar_type() == ScalarType::Float && lv.scalar_type() == ScalarType::Float &&
                      bp.is_contiguous() && lv.is_contiguous() && lv.dim() == 3 && bp.dim() <= 2,
                  "tmaf_stable: expected contiguous float32 breakpoints (m,)/(C, m), levels (C, 2b+1, m+1)");
  const Shape s{x.size(0), x.size(1), bp.size(bp.dim() - 1), lv.size(1), lv.size(1) / 2};
  STD_TORCH_CHECK(lv.size(0) == s.C && lv.size(2) == s.m + 1 && s.m <= kMaxM, "tmaf_stable: bad levels shape");
  return s;
}

// As ops.cpp's cols_table (float, jump form).
const float* cols_table(const Tensor& bp, const Tensor& lv, const Shape& s, int64_t L, bool backward) {
  const int64_t m = s.m, m1 = s.m + 1, b = s.b, W = s.W, C = s.C, n_vec = ceil_div(C, L);
  const int64_t per_d = 2 * m + 1, blk = backward ? m + W * m1 : W * per_d;
  const int64_t bp_stride = bp.dim() == 2 ? m : 0;
  float* tp = scratch<0>(n_vec * blk * L);
  std::fill(tp, tp + n_vec * blk * L, 0.0f);
  const float* bps = static_cast<const float*>(bp.const_data_ptr());
  const float* lvs = static_cast<const float*>(lv.const_data_ptr());
  for (int64_t v = 0; v < n_vec; ++v) {
    float* tv = tp + v * blk * L;
    const int64_t lanes = std::min<int64_t>(L, C - v * L);
    for (int64_t l = 0; l < lanes; ++l) {
      const int64_t c = v * L + l;
      if (backward) {
        for (int64_t k = 0; k < m; ++k) tv[k * L + l] = bps[c * bp_stride + k];
        for (int64_t d = -b; d <= b; ++d) {
          const int64_t i = c - d;
          if (i < 0 || i >= C) continue;
          const float* src = lvs + (i * W + d + b) * m1;
          float* dst = tv + (m + (d + b) * m1) * L + l;
          for (int64_t k = 0; k < m1; ++k) dst[k * L] = src[k];
        }
      } else {
        for (int64_t d = -b; d <= b; ++d) {
          const int64_t j = c + d;
          if (j < 0 || j >= C) continue;
          float* dst = tv + (d + b) * per_d * L + l;
          for (int64_t k = 0; k < m; ++k) dst[k * L] = bps[j * bp_stride + k];
          const float* src = lvs + (c * W + d + b) * m1;
          for (int64_t k = 0; k < m1; ++k) dst[(m + k) * L] = src[k];
        }
      }
    }
  }
  return tp;
}

int64_t cols_block(const Shape& s, bool backward) {
  const int64_t m1 = s.m + 1;
  const int64_t per_channel = 4 * (backward ? s.m + s.W * m1 * 2 : s.W * (2 * s.m + 1));
  const int64_t c = std::max<int64_t>(16, (kL1Budget / per_channel) / 16 * 16);
  return std::min<int64_t>(std::min<int64_t>(c, kMaxColsBlock), ceil_div(s.C, 16) * 16);
}

Tensor banded_fwd(Tensor x, Tensor bp, Tensor lv, int64_t channel_dim) {
  const Shape s = check(x, bp, lv, channel_dim);
  Tensor out = torch::stable::empty({s.N, s.C}, ScalarType::Float);
  const KernelSet& ks = kset();
  KernelArgs a;
  a.x = x.const_data_ptr();
  a.out = out.mutable_data_ptr();
  a.C = s.C; a.b = s.b; a.m = s.m; a.outer = s.N; a.inner = 1;
  a.lanes = ks.lanes[0];
  a.lv = a.bp = cols_table(bp, lv, s, a.lanes, /*backward=*/false);
  a.cblock = cols_block(s, false);
  a.n_cb = ceil_div(s.C, a.cblock);
  a.rblock = std::max<int64_t>(1, ceil_div(kTaskElems, std::min(s.C, a.cblock)));
  const int64_t ntask = ceil_div(s.N, a.rblock) * a.n_cb;
  const TaskFn fn = ks.fwd_cols[0][0][variant_of(s.m)];
  torch::stable::parallel_for(0, ntask, 1, [&](int64_t t0, int64_t t1) { fn(a, t0, t1); });
  return out;
}

std::tuple<Tensor, Tensor> banded_bwd(Tensor g, Tensor x, Tensor bp, Tensor lv, int64_t channel_dim) {
  const Shape s = check(x, bp, lv, channel_dim);
  check(g, bp, lv, channel_dim);
  STD_TORCH_CHECK(g.size(0) == s.N && g.size(1) == s.C, "tmaf_stable: the gradient must have the input's shape");
  const KernelSet& ks = kset();
  const int64_t W = s.W, m1 = s.m + 1, b = s.b, C = s.C, P = m1, L = ks.lanes[0], n_vec = ceil_div(C, L);
  Tensor gx = torch::stable::empty({s.N, C}, ScalarType::Float);
  Tensor gl = torch::stable::empty({C, W, m1}, ScalarType::Float);
  float* sums = static_cast<float*>(gl.mutable_data_ptr());
  std::fill(sums, sums + C * W * m1, 0.0f);
  KernelArgs a;
  a.x = x.const_data_ptr();
  a.g = g.const_data_ptr();
  a.gx = gx.mutable_data_ptr();
  a.C = C; a.b = b; a.m = s.m; a.outer = s.N; a.inner = 1; a.lanes = L;
  a.lv = a.bp = cols_table(bp, lv, s, L, /*backward=*/true);
  a.cblock = cols_block(s, true);
  a.n_cb = ceil_div(C, a.cblock);
  a.rblock = std::max<int64_t>(ceil_div(kTaskElems, std::min(C, a.cblock)), 16 * W * P);
  const int64_t n_rb = ceil_div(s.N, a.rblock), ntask = n_rb * a.n_cb;
  float* p = scratch<1>(n_rb * n_vec * W * P * L);
  a.partial = p;
  const TaskFn fn = ks.bwd_cols[0][0][variant_of(s.m)];
  torch::stable::parallel_for(0, ntask, 1, [&](int64_t t0, int64_t t1) { fn(a, t0, t1); });
  // the ordered reduction (ops.cpp reduce_partials): row blocks in order, in float64
  torch::stable::parallel_for(0, C, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t d = -b; d <= b; ++d) {
        const int64_t j = i + d;
        if (j < 0 || j >= C) continue;
        for (int64_t k = 0; k < m1; ++k) {
          double acc = 0.0;
          for (int64_t q = 0; q < n_rb; ++q)
            acc += static_cast<double>(p[(((q * n_vec + j / L) * W + d + b) * P + k) * L + j % L]);
          sums[(i * W + d + b) * m1 + k] = static_cast<float>(acc);
        }
      }
  });
  return std::make_tuple(gx, gl);
}

}  // namespace
}  // namespace tmaf_stable

STABLE_TORCH_LIBRARY(tmaf_stable, m) {
  m.def("banded_fwd(Tensor x, Tensor breakpoints, Tensor levels, int channel_dim) -> Tensor");
  m.def("banded_bwd(Tensor grad, Tensor x, Tensor breakpoints, Tensor levels, int channel_dim) "
        "-> (Tensor, Tensor)");
}

STABLE_TORCH_LIBRARY_IMPL(tmaf_stable, CPU, m) {
  m.impl("banded_fwd", TORCH_BOX(&tmaf_stable::banded_fwd));
  m.impl("banded_bwd", TORCH_BOX(&tmaf_stable::banded_bwd));
}
