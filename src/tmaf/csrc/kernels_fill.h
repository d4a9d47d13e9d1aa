// Fills a KernelSet with the addresses of one ISA's kernels. Included after the ISA's
// `#pragma GCC pop_options`, so this code is built for the baseline and runs on any CPU;
// the kernels it points to keep their ISA (the target applies where they are declared).

namespace tmaf_native {
namespace TMAF_ISA_NS {

template <typename T, int MT>
static void fill_variant(KernelSet* set, int dt, int v) {
  set->fwd_rows[0][dt][v] = &fwd_rows<T, MT, false>;
  set->bwd_rows[0][dt][v] = &bwd_rows<T, MT, false>;
  set->fwd_cols[0][dt][v] = &fwd_cols<T, MT, false>;
  set->bwd_cols[0][dt][v] = &bwd_cols<T, MT, false>;
  set->fwd_rows[1][dt][v] = &fwd_rows<T, MT, true>;
  set->bwd_rows[1][dt][v] = &bwd_rows<T, MT, true>;
  set->fwd_cols[1][dt][v] = &fwd_cols<T, MT, true>;
  set->bwd_cols[1][dt][v] = &bwd_cols<T, MT, true>;
}

template <typename T>
static void fill_dtype(KernelSet* set, int dt) {
  static_assert(kSpecialisedM[1] == 1 && kSpecialisedM[2] == 5 && kSpecialisedM[3] == 9 &&
                kSpecialisedM[4] == 17, "kernels.h and the instantiations below disagree");
  fill_variant<T, 0>(set, dt, 0);
  fill_variant<T, 1>(set, dt, 1);
  fill_variant<T, 5>(set, dt, 2);
  fill_variant<T, 9>(set, dt, 3);
  fill_variant<T, 17>(set, dt, 4);
}

static void fill_all(KernelSet* set) {
  set->lanes[0] = Simd<float>::L;
  set->lanes[1] = Simd<double>::L;
  set->cols_transposed = Tile8<float>::enabled;
  fill_dtype<float>(set, 0);
  fill_dtype<double>(set, 1);
}

}  // namespace TMAF_ISA_NS
}  // namespace tmaf_native
