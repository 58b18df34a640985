#!/bin/bash
# The README shows provider-shims/example/hello.c whole: fail when they drift.
set -euo pipefail
cd "$(dirname "$0")/.."
diff -u provider-shims/example/hello.c \
    <(awk '/^## Writing a provider in C/{s=1} s&&/^```c$/{p=1;next} p&&/^```$/{exit} p' README.md)
