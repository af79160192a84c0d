#!/usr/bin/env bash
# tests/run.sh BUILD_DIR [--sanitize]
#
# Runs every test program against one build: the C tests (BUILD_DIR/tests/test_*), the
# Python tests (tests/py/test_*.py, /usr/bin/python3, driving BUILD_DIR/qkv), and the
# browser tests (tests/js/test_*.mjs). With --sanitize (the ASan+UBSan build) it runs the
# C tests and the Python tests marked "# qkv-test: sanitize" (the bad-input ones).
# Each program prints "N passed, N failed, N skipped"; the last line here is the total.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: tests/run.sh BUILD_DIR [--sanitize]}
sanitize=0
[ "${2:-}" = "--sanitize" ] && sanitize=1
cd "$root"
export QKV_BIN="$root/$build/qkv"
export QKV_BUILD="$root/$build"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
logdir="$root/$build/test-logs"
mkdir -p "$logdir"
rm -f "$root/$build/test-totals"

total_p=0 total_f=0 total_s=0
failed_programs=()

run_one() { # name, command...
    local name=$1; shift
    local log="$logdir/$(basename "$name").log"
    local t0=$SECONDS
    printf '== %s\n' "$name"
    timeout 1800 "$@" >"$log" 2>&1
    local rc=$?
    grep -E '^(FAIL|skip)' "$log" | head -50
    local line
    line=$(grep -E '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    local p=0 f=0 s=0
    if [ -n "$line" ]; then
        p=$(sed -E 's/.*([0-9]+) passed.*/\1/; s/^[^0-9]*//' <<<"$line")
        p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+')
        f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+')
        s=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    fi
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1  # crashed or exited non-zero without saying why: count it as a failure
        echo "   exited with status $rc; last lines of $log:"
        tail -n 20 "$log" | sed 's/^/   | /'
    fi
    printf '   %s passed, %s failed, %s skipped (%ds)\n' "$p" "$f" "${s:-0}" $((SECONDS - t0))
    total_p=$((total_p + p)); total_f=$((total_f + f)); total_s=$((total_s + ${s:-0}))
    [ "$f" -ne 0 ] && failed_programs+=("$name")
}

for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$t" "$t"
done

if [ -x /usr/bin/python3 ]; then
    for t in tests/py/test_*.py; do
        [ -f "$t" ] || continue
        if [ $sanitize -eq 1 ] && ! grep -q '^# qkv-test: sanitize' "$t"; then continue; fi
        run_one "$t" /usr/bin/python3 "$t"
    done
else
    echo "== tests/py: skipped (no /usr/bin/python3; .ci/run installs it)"
fi

if [ $sanitize -eq 0 ]; then
    for t in tests/js/test_*.mjs; do
        [ -f "$t" ] || continue
        run_one "$t" node "$t"
    done
fi

if [ ${#failed_programs[@]} -gt 0 ]; then
    echo "failed: ${failed_programs[*]} (logs in $logdir)"
fi
echo "$total_p $total_f $total_s" > "$root/$build/test-totals"
echo "total: $total_p passed, $total_f failed, $total_s skipped"
[ "$total_f" -eq 0 ]
