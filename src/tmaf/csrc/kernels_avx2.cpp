// Banded TMAF kernels for the avx2 instruction set (see kernels_impl.h).
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define TMAF_ISA_NS isa_avx2
#define TMAF_VBYTES 32
#define TMAF_X86_GATHER  // vgatherdps / vgatherqpd for the per-lane table lookups
#define TMAF_FMA  // _mm256_fmadd_ps in the 8 x 8 tile kernels (float, 8 lanes)
#include "kernels_impl.h"
#pragma GCC pop_options  // what follows runs on any CPU
#include "kernels_fill.h"

namespace tmaf_native {
void fill_kernels_avx2(KernelSet* set) {
  set->isa = "avx2";
  isa_avx2::fill_all(set);
}
}  // namespace tmaf_native
#endif
