# Sourced by the shell benches: clocks, medians, and hardroot's own cold and
# warm image builds (the same steps in image.sh and mkosi.sh).
# Needs: $hr (the hardroot binary), $work (the bench's scratch folder).

now() { date +%s.%N; }
secs() { awk "BEGIN { printf \"%.1f\", $2 - $1 }"; }
# Of the numbers on stdin, one a line (blank lines skipped):
median() { sort -n | awk 'NF { v[++n] = $1 } END { m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; printf "%.1f", m }'; }
spread() { sort -n | awk 'NF { v[++n] = $1 } END { printf "%.1f-%.1f", v[1], v[n] }'; }
# record FILE T0 T1: append the seconds between two `now`s to FILE.
record() { secs "$2" "$3" >>"$1"; echo >>"$1"; }

# hr_round PROFILE: one cold `hardroot image` from an empty cache, then a warm
# one of PROFILE with one value changed (same package set, so the cached base
# is reused), each into a fresh output folder as a first build would.
# Appends to $work/hr-cold.txt and $work/hr-warm.txt; the warm run's steps go
# to $work/hr-warm.steps, the cold image stays in $work/hr-cold.
hr_round() {
  local profile=$1 variant t0 t1
  variant="$(dirname "$profile")/.bench-$$.toml"
  printf '[profile]\nimports = ["%s"]\n[force.networking]\nhostname = "bench"\n' "$(basename "$profile")" >"$variant"
  rm -rf "$work/hr-cache" "$work/hr-cold" "$work/hr-warm"
  t0=$(now)
  "$hr" image "$profile" -o "$work/hr-cold" --cache "$work/hr-cache" -q >/dev/null
  t1=$(now)
  record "$work/hr-cold.txt" "$t0" "$t1"
  t0=$(now)
  "$hr" image "$variant" -o "$work/hr-warm" --cache "$work/hr-cache" 2>"$work/hr-warm.steps" >/dev/null
  t1=$(now)
  record "$work/hr-warm.txt" "$t0" "$t1"
  rm -f "$variant"
}
