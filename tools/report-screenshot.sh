#!/usr/bin/env bash
# Renders a run's report.html in headless Chromium and saves a screenshot, to see that the
# report displays in a real browser (from a file:// URL, with no network).
#
#   tools/report-screenshot.sh RUN_DIR|REPORT.html OUT.png [WIDTHxHEIGHT]
#
# Needs Chromium: `apt-get install chromium` (Debian), `chromium-browser` (Ubuntu) or Google
# Chrome; set CHROMIUM=/path/to/binary to choose one. The default size, 1340x2000, shows the
# headline figures, the training curves and the confusion matrix.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 RUN_DIR|REPORT.html OUT.png [WIDTHxHEIGHT]" >&2
    exit 2
fi
src=$1
out=$2
size=${3:-1340x2000}
if [ -d "$src" ]; then
    src=$src/report.html
fi
if [ ! -f "$src" ]; then
    echo "error: $src not found (write it with: wrnc report RUN_DIR)" >&2
    exit 2
fi
if ! [[ $size =~ ^[0-9]+x[0-9]+$ ]]; then
    echo "error: size must be WIDTHxHEIGHT, e.g. 1340x2000 (got $size)" >&2
    exit 2
fi
browser=${CHROMIUM:-}
if [ -z "$browser" ]; then
    for b in chromium chromium-browser google-chrome chrome-headless-shell; do
        if command -v "$b" >/dev/null 2>&1; then
            browser=$b
            break
        fi
    done
fi
if [ -z "$browser" ]; then
    echo "error: no Chromium found; install it (Debian: apt-get install chromium) or set CHROMIUM" >&2
    exit 1
fi
url="file://$(realpath "$src")"
dest=$(realpath -m "$out")
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: Chromium refuses to run as root otherwise (containers, CI).
"$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --user-data-dir="$profile" --force-device-scale-factor=1 \
    --window-size="${size/x/,}" --screenshot="$dest" "$url" >/dev/null 2>&1
if [ ! -s "$dest" ]; then
    echo "error: $browser wrote no screenshot" >&2
    exit 1
fi
echo "wrote $out"
