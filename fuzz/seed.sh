#!/usr/bin/env bash
# Builds a seed corpus (fuzz/corpus/eval) from the bad-input cases and the fixtures:
# each seed is profile, module.toml and template joined by "\n%%%%\n".
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz/corpus/eval
mkdir -p "$out"
sep=$'\n%%%%\n'
n=0
for case in tests/bad-input/*/ tests/fuzz-regressions/; do
  [ -f "$case/profile.toml" ] || continue
  for m in "$case"/modules/*/ tests/fixtures/modules/*/ tests/fixtures/more-modules/*/; do
    [ -f "$m/module.toml" ] || continue
    tmpl=$(find "$m" -name '*.tera' -type f | head -n1)
    {
      sed 's/imports = \[.*\]/imports = ["m"]/' "$case/profile.toml"
      printf '%s' "$sep"
      sed 's/^template = ".*"/template = "t.tera"/' "$m/module.toml"
      printf '%s' "$sep"
      [ -n "$tmpl" ] && cat "$tmpl"
    } > "$out/seed-$n"
    n=$((n + 1))
  done
done
echo "$n seeds in $out"
