#!/usr/bin/env bash
# The native extension built with AddressSanitizer and UndefinedBehaviorSanitizer, and the core
# tests run against it.
#
#   scripts/sanitize.sh [pytest args]        (default: tests/core -q)
#
# Builds tmaf._C with -fsanitize=address,undefined into build/sanitize (TMAF_SANITIZE_DIR; the
# normal build in src/tmaf is left alone), lays out a copy of the tmaf package around it in
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

echo "== build (sanitizers: address, undefined) into $OUT"
rm -rf "$OUT/lib" "$OUT/pkg" "$OUT/logs"
CC=$CXX_BIN CXX=$CXX_BIN CFLAGS="$SAN" CXXFLAGS="$SAN" LDFLAGS="$SAN" TMAF_REQUIRE_NATIVE=1 \
    python setup.py -q build_ext --build-lib "$OUT/lib" --build-temp "$OUT/temp"
so=$(ls "$OUT"/lib/tmaf/_C*.so)
nm -D "$so" | grep -q __asan_init || { echo "sanitize: $so is not instrumented" >&2; exit 1; }

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
