#!/bin/bash
# docs/metrics.md lists every metric family vkc-core registers: fail when a
# family is added (or renamed) in core/ without a line there, or when the
# document names one the code no longer has.
set -euo pipefail
cd "$(dirname "$0")/.."
code=$(perl -0777 -ne 'print "$1\n" while /metrics_(?:counter|gauge)\(\s*[^,()]+,\s*"([a-z_]+)"/g' core/*.c | sort -u)
docs=$(grep -o '^| `[a-z_]*`' docs/metrics.md | tr -d '|` ' | sort -u)
[ -n "$code" ] || { echo "no metric family found in core/*.c: the pattern is out of date"; exit 1; }
diff -u <(echo "$docs") <(echo "$code") ||
    { echo "docs/metrics.md (-) and the families core/ registers (+) differ"; exit 1; }
echo "docs/metrics.md lists the $(wc -l <<<"$code") metric families of core/"
