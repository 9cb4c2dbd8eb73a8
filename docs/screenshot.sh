#!/usr/bin/env bash
# Renders a run's report.html in headless Chromium (Debian: apt-get install chromium) as PNG.
#   docs/screenshot.sh RUN_DIR [OUT.png]      (default docs/report.png)
set -euo pipefail
run_dir="$(cd "$1" && pwd)"
out="${2:-$(dirname "$0")/report.png}"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,2000 \
  --screenshot="$out" "file://$run_dir/report.html" 2>/dev/null
echo "$out"
