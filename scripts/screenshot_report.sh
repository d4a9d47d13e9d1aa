#!/usr/bin/env bash
# Render a `tmaf report` HTML page in headless Chromium, check that every <img> loaded,
# and save a screenshot.
#
#   scripts/screenshot_report.sh REPORT_HTML SCREENSHOT_PNG [WIDTH,HEIGHT]
#
# Checks (exit 1 if any fails): the page renders (a non-empty screenshot is written), it
# has at least one image, and every image decoded (complete and naturalWidth > 0, read
# after the load event by a small script injected into a temporary copy of the page).
# Prints e.g. "IMGCHECK total=9 loaded=9 widths=640,900,...". Needs Debian's chromium
# (apt-get install -y chromium); CHROMIUM=/path overrides the binary.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 REPORT_HTML SCREENSHOT_PNG [WIDTH,HEIGHT]" >&2
    exit 2
fi
html=$(realpath "$1")
shot=$(realpath -m "$2")
size=${3:-1280,2400}
chrome=${CHROMIUM:-/usr/bin/chromium}
[[ -f "$html" ]] || { echo "error: $html not found" >&2; exit 2; }
[[ -x "$chrome" ]] || { echo "error: $chrome not found (apt-get install -y chromium)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync
       --disable-dev-shm-usage --hide-scrollbars --virtual-time-budget=10000)

# 1. Screenshot of the page as it is.
rm -f "$shot"
timeout 120 "$chrome" "${flags[@]}" --user-data-dir="$work/profile1" \
    --screenshot="$shot" --window-size="$size" "file://$html" >"$work/shot.log" 2>&1 || true
if [[ ! -s "$shot" ]]; then
    echo "error: no screenshot written; chromium said:" >&2
    tail -5 "$work/shot.log" >&2
    exit 1
fi

# 2. Image check on a copy with an injected script; --dump-dom prints the DOM after load.
probe='<script>window.addEventListener("load",function(){var a=Array.from(document.images);
var ok=a.filter(function(i){return i.complete&&i.naturalWidth>0;}).length;
var p=document.createElement("pre");p.textContent="IMG"+"CHECK total="+a.length+" loaded="+ok+
" widths="+a.map(function(i){return i.naturalWidth;}).join(",");document.body.appendChild(p);});
</script>'
python3 - "$html" "$work/probe.html" "$probe" <<'EOF'
import sys
page = open(sys.argv[1], encoding="utf-8").read()
marker = "</body>"
at = page.rfind(marker)
page = page[:at] + sys.argv[3] + page[at:] if at >= 0 else page + sys.argv[3]
open(sys.argv[2], "w", encoding="utf-8").write(page)
EOF
timeout 120 "$chrome" "${flags[@]}" --user-data-dir="$work/profile2" --dump-dom \
    "file://$work/probe.html" >"$work/dom.html" 2>"$work/dom.log" || true
line=$(grep -oE "IMGCHECK total=[0-9]+ loaded=[0-9]+ widths=[0-9,]*" "$work/dom.html" | head -1 || true)
if [[ -z "$line" ]]; then
    echo "error: image check did not run; chromium said:" >&2
    tail -5 "$work/dom.log" >&2
    exit 1
fi
echo "$line"
echo "screenshot: $shot ($(stat -c %s "$shot") bytes, window $size)"
total=$(sed -E 's/.*total=([0-9]+).*/\1/' <<<"$line")
loaded=$(sed -E 's/.*loaded=([0-9]+).*/\1/' <<<"$line")
if [[ "$total" -eq 0 || "$loaded" -ne "$total" ]]; then
    echo "error: $loaded of $total images loaded" >&2
    exit 1
fi
