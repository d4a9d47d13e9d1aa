// Banded TMAF kernels for the portable baseline (see kernels_impl.h): 16-byte vectors, which
// the compiler maps to SSE4.2 on x86-64 (GCC 12 cannot lower the 64-bit lane selects to plain
// SSE2; the dispatcher checks the CPU for SSE4.2) and to the native vector unit elsewhere.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC push_options
#pragma GCC target("sse4.2")
#endif
#define TMAF_ISA_NS isa_default
#define TMAF_VBYTES 16
#include "kernels_impl.h"
#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC pop_options  // what follows runs on any CPU
#endif
#include "kernels_fill.h"

namespace tmaf_native {
void fill_kernels_default(KernelSet* set) {
  set->isa = "default";
  isa_default::fill_all(set);
}
}  // namespace tmaf_native

