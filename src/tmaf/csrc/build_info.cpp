// What tmaf._C was built against, for tmaf/_loader.py to compare with the running torch: the
// operator tmaf::build_info() once the library loads, and the same text as a marker that the
// loader finds in the file when loading fails (undefined symbols under another torch).
#include <torch/library.h>

#include <string>

#ifndef TMAF_TORCH_VERSION  // setup.py passes the torch.__version__ it builds against
#define TMAF_TORCH_VERSION "unknown"
#endif
#define TMAF_STR2(x) #x
#define TMAF_STR(x) TMAF_STR2(x)

extern "C" __attribute__((used)) const char tmaf_build_info[] =
    "tmaf-build-info:torch=" TMAF_TORCH_VERSION ";cxx11_abi=" TMAF_STR(_GLIBCXX_USE_CXX11_ABI) ";";

namespace {
std::string build_info() { return tmaf_build_info; }
}  // namespace

TORCH_LIBRARY_FRAGMENT(tmaf, m) { m.def("build_info() -> str", &build_info); }
