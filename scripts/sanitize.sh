#!/usr/bin/env bash
# The native extension built with AddressSanitizer and UndefinedBehaviorSanitizer, and the core
# tests run against it.
#
#   scripts/sanitize.sh [pytest args]        (default: tests/core -q)
#   TMAF_SANITIZE_NO_BUILD=1 scripts/sanitize.sh ...   (reuse the last sanitized build)
#
# Builds tmaf._C with -fsanitize=address,undefined (setup.py's flags at -O1) into build/sanitize
# (TMAF_SANITIZE_DIR; the normal build in src/tmaf is left alone), lays out a copy of the tmaf package around it in
# build/sanitize/pkg, and runs pytest with that copy first on PYTHONPATH and the sanitizer
# runtimes preloaded (Python itself is not instrumented, so ASan must load first). Leak checking
# is off (CPython and torch keep allocations alive on purpose). Any sanitizer report is written
# to build/sanitize/logs/ and fails the run, as does a failing test. Needs gcc (or clang) with
# libasan/libubsan and the project's torch; run from a checkout with the dev extra installed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- tests/core -q
OUT=${TMAF_SANITIZE_DIR:-build/sanitize}
CXX_BIN=${CXX:-c++}
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
start=$(date +%s)

if [ -n "${TMAF_SANITIZE_NO_BUILD:-}" ] && ls "$OUT"/lib/_C*.so >/dev/null 2>&1; then
    echo "== TMAF_SANITIZE_NO_BUILD: reusing $(ls "$OUT"/lib/_C*.so)"
else
    echo "== build (sanitizers: address, undefined) into $OUT"
    rm -rf "$OUT/lib" "$OUT/obj" "$OUT/pkg" "$OUT/logs"
    mkdir -p "$OUT/lib" "$OUT/obj"
    # setup.py's flags for tmaf._C (see setup.py), at -O1 (the sanitizers' recommended level, and a
    # faster build), with torch's headers and libraries
    read -r INC LIB <<< "$(python -c 'from torch.utils.cpp_extension import include_paths as i, \
library_paths as l; print(",".join(i()), ",".join(l()))')"
    PYINC=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    FLAGS="-O1 -g -fPIC -fwrapv -fopenmp -ffp-contract=off -Wno-psabi -std=c++20 $SAN
           -DTORCH_API_INCLUDE_EXTENSION_H -DTORCH_EXTENSION_NAME=_C -I${INC//,/ -I} -I$PYINC
           -DTMAF_TORCH_VERSION=\"$(python -c 'import torch; print(torch.__version__)')\""
    export CXX_BIN FLAGS OUT
    printf '%s\n' ops build_info kernels_default kernels_avx2 kernels_avx512 | xargs -P "${MAX_JOBS:-2}" -I{} \
        sh -c '$CXX_BIN $FLAGS -c src/tmaf/csrc/{}.cpp -o "$OUT/obj/{}.o"'
    so="$OUT/lib/_C$(python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
    $CXX_BIN -shared $SAN -fopenmp "$OUT"/obj/*.o -L${LIB//,/ -L} -Wl,-rpath,${LIB//,/:} \
        -lc10 -ltorch -ltorch_cpu -ltorch_python -o "$so"
fi
so=$(ls "$OUT"/lib/_C*.so)
nm -D "$so" | grep -q __asan_init || { echo "sanitize: $so is not instrumented" >&2; exit 1; }

rm -rf "$OUT/pkg" "$OUT/logs"
mkdir -p "$OUT/pkg" "$OUT/logs"
cp -r src/tmaf "$OUT/pkg/tmaf"
rm -f "$OUT"/pkg/tmaf/_C*.so
cp "$so" "$OUT/pkg/tmaf/"
built=$(date +%s)
echo "== built in $((built - start)) s: $so"

asan=$($CXX_BIN -print-file-name=libasan.so)
ubsan=$($CXX_BIN -print-file-name=libubsan.so)
logs=$(cd "$OUT/logs" && pwd)
export PYTHONPATH="$(cd "$OUT/pkg" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
export LD_PRELOAD="$asan:$ubsan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$logs/asan"
export UBSAN_OPTIONS="print_stacktrace=1:log_path=$logs/ubsan"
python -c "import tmaf, tmaf._C as c; print('== testing', tmaf.__file__, c.__file__, tmaf.native_status())"
set +e
python -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
end=$(date +%s)
echo "== tests: exit $rc, $((end - built)) s (build $((built - start)) s, total $((end - start)) s)"
if ls "$logs"/* >/dev/null 2>&1; then
    echo "== sanitizer reports:" >&2
    cat "$logs"/* >&2
    exit 1
fi
echo "== no sanitizer reports"
exit $rc
