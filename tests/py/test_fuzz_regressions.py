# qkv-test: sanitize
"""test_fuzz_regressions.py -- replays the fuzz targets' inputs without libFuzzer.

Each libFuzzer target tests/fuzz/fz_<name>.c is compiled here with the project's compiler
($CC or cc) and tests/fuzz/replay_main.c, linked against the library under test
($QKV_BUILD/libqkv_app.a and libqkv.a; with -fsanitize=address,undefined when that library is the sanitizer
build), and run on
  - the seed corpus (tests/fuzz/make_seeds.py: valid tiny models, vocabularies, requests, and
    one input per malformed class of research/reliability-anchors.md), and
  - every file in tests/fuzz/regressions/<target>/ (minimised inputs that once crashed).
The targets check their properties themselves (abort on a violation), so "no crash" here
means: no sanitizer report, no failed property, every input replayed.
No clang and no libFuzzer needed; `make -f tests/fuzz/Makefile run` is the fuzzing itself.
"""
import glob
import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, Skip, run_all, shared_data, test, tmpdir  # noqa: E402

FUZZ_DIR = os.path.join(ROOT, "tests", "fuzz")
REG_DIR = os.path.join(FUZZ_DIR, "regressions")
BUILD = os.environ.get("QKV_BUILD", os.path.join(ROOT, "build"))
LIB = os.path.join(BUILD, "libqkv.a")
APP = os.path.join(BUILD, "libqkv_app.a")  # views and server, on top of the library
TARGETS = sorted(os.path.basename(p)[:-2] for p in glob.glob(os.path.join(FUZZ_DIR, "fz_*.c")))
PKGS = ["libmicrohttpd", "jansson", "libutf8proc", "openblas"]

_seeds = None


def sanitized():
    """Whether the library under test is the ASan build (its objects call the ASan runtime)."""
    with open(LIB, "rb") as f:
        return b"__asan_report" in f.read()


def pkg_config(flag):
    try:
        return shlex.split(subprocess.run(["pkg-config", flag] + PKGS, capture_output=True,
                                          text=True, check=True).stdout)
    except (OSError, subprocess.CalledProcessError):
        return []


def build_replay(target):
    """Compiles the target with replay_main.c; returns the binary (rebuilt when stale)."""
    if not os.path.isfile(LIB):
        raise Skip("%s not built" % LIB)
    out_dir = os.path.join(BUILD, "fuzz-replay")
    os.makedirs(out_dir, exist_ok=True)
    exe = os.path.join(out_dir, target)
    srcs = [os.path.join(FUZZ_DIR, target + ".c"), os.path.join(FUZZ_DIR, "replay_main.c")]
    deps = srcs + [os.path.join(FUZZ_DIR, "fuzz_common.h"), LIB, APP]
    if os.path.isfile(exe) and all(os.path.getmtime(exe) > os.path.getmtime(d) for d in deps):
        return exe
    cc = os.environ.get("CC", "cc")
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
           "-fno-omit-frame-pointer"] if sanitized() else []
    cmd = ([cc, "-std=c11", "-D_GNU_SOURCE", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
            "-Wno-unused-parameter", "-I" + os.path.join(ROOT, "include"),
            "-I" + os.path.join(ROOT, "src"), "-I" + FUZZ_DIR] + pkg_config("--cflags") + san +
           srcs + [APP, LIB, "-fopenmp"] + pkg_config("--libs") + ["-lm", "-lpthread", "-o", exe + ".tmp"])
    cp = subprocess.run(cmd, capture_output=True, text=True)
    assert cp.returncode == 0, "compiling %s failed:\n%s" % (target, cp.stderr[-3000:])
    os.replace(exe + ".tmp", exe)
    return exe


def seeds_dir():
    global _seeds
    if _seeds is None:
        d = tmpdir()
        cp = subprocess.run([sys.executable, os.path.join(FUZZ_DIR, "make_seeds.py"), d],
                            capture_output=True, text=True)
        assert cp.returncode == 0, "make_seeds.py failed:\n" + cp.stderr[-2000:]
        _seeds = d
    return _seeds


def count_files(d):
    return len([f for f in os.listdir(d) if not f.startswith(".") and
                os.path.isfile(os.path.join(d, f))]) if os.path.isdir(d) else 0


def replay(target):
    exe = build_replay(target)
    dirs = [os.path.join(seeds_dir(), target)]
    reg = os.path.join(REG_DIR, target)
    if os.path.isdir(reg):
        dirs.append(reg)
    want = sum(count_files(d) for d in dirs)
    assert want > 0, "no inputs for %s" % target
    env = dict(os.environ)
    env["QKV_FUZZ_VERBOSE"] = "1"
    # a loader that asks for more memory than exists must get NULL (and say so), not abort
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":allocator_may_return_null=1").lstrip(":")
    data = shared_data()
    # fz_tok_encode: GPT-2's vocabulary when shared/data has it, else one it trains itself
    if data and os.path.isdir(os.path.join(data, "gpt2")):
        env["QKV_FUZZ_GPT2"] = os.path.join(data, "gpt2")
    cp = subprocess.run([exe] + dirs, capture_output=True, text=True, env=env, timeout=900,
                        cwd=ROOT)
    if cp.returncode != 0:
        last = [l for l in cp.stdout.splitlines() if l.startswith("input ")]
        raise AssertionError("%s crashed (status %d) on %s:\n%s" % (
            target, cp.returncode, last[-1] if last else "?", cp.stderr[-4000:]))
    done = [l for l in cp.stdout.splitlines() if l.startswith("replayed ")]
    assert done and done[-1] == "replayed %d inputs" % want, \
        "%s: expected %d inputs, got %r" % (target, want, done)
    # QKV_FUZZ_VERBOSE: after each "input PATH (N bytes)" line, "accepted" or "rejected: why"
    verdicts, current = {}, None
    for line in cp.stdout.splitlines():
        if line.startswith("input "):
            current = line[6:].rsplit(" (", 1)[0]
        elif current and (line == "accepted" or line.startswith("rejected: ")):
            verdicts[current] = line
    n_ok = 0
    for path in sorted(verdicts):
        if os.path.basename(path).startswith("ok_"):
            assert verdicts[path] == "accepted", "%s: valid seed %s was %s" % (
                target, os.path.basename(path), verdicts[path])
            n_ok += 1
    accepted = sum(v == "accepted" for v in verdicts.values())
    print("      %s: %d inputs (%d regressions), %d accepted, %d of them valid seeds" % (
        target, want, count_files(reg), accepted, n_ok), flush=True)


def make_test(target):
    def t():
        replay(target)
    t.__name__ = "replay_" + target
    return test(t)


for _t in TARGETS:
    make_test(_t)


# Per-target libFuzzer options. Empty now: fz_npy ran with ["-fork=1", "-ignore_ooms=1"] until
# tests/fuzz/FINDINGS.md F-2 was fixed (every out-of-memory report fails the smoke again).
SMOKE_EXTRA = {}


def libfuzzer_available():
    """clang with libFuzzer's runtime (Debian: clang + libclang-rt-14-dev)."""
    cc = os.environ.get("FUZZ_CC", "clang")
    try:
        cp = subprocess.run([cc, "-print-file-name=libclang_rt.fuzzer-x86_64.a"],
                            capture_output=True, text=True)
    except OSError:
        return False
    path = cp.stdout.strip()
    if cp.returncode == 0 and os.path.isabs(path) and os.path.isfile(path):
        return True
    cp = subprocess.run([cc, "-print-resource-dir"], capture_output=True, text=True)
    return bool(glob.glob(os.path.join(cp.stdout.strip(), "lib", "linux",
                                       "libclang_rt.fuzzer-x86_64.a")))


@test
def libfuzzer_smoke():
    """A short real fuzzing run of every target (research/reliability-anchors.md 4.2: a smoke
    per target in CI): builds build-fuzz/ with clang (ASan+UBSan+libFuzzer), then runs each
    target from its seeds for QKV_FUZZ_SMOKE_SECONDS (default 10) with a fixed seed.
    Only in the optimised pass (the targets are sanitizer builds themselves); QKV_FUZZ_SMOKE=0
    skips it."""
    if os.environ.get("QKV_FUZZ_SMOKE", "1") == "0":
        raise Skip("QKV_FUZZ_SMOKE=0")
    if os.path.isfile(LIB) and sanitized():
        raise Skip("sanitizer pass: the replay tests above cover it; the smoke runs once, in "
                   "the optimised pass")
    if not libfuzzer_available():
        raise Skip("no clang with libFuzzer (tools/setup.sh --test installs clang and "
                   "libclang-rt-14-dev)")
    seconds = int(os.environ.get("QKV_FUZZ_SMOKE_SECONDS", "10"))
    cp = subprocess.run(["make", "--no-print-directory", "-j2", "-f", "tests/fuzz/Makefile", "all"],
                        cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert cp.returncode == 0, "building the fuzz targets failed:\n" + (cp.stdout + cp.stderr)[-3000:]
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "allocator_may_return_null=1:detect_leaks=1"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    data = shared_data()
    if data and os.path.isdir(os.path.join(data, "gpt2")):
        env["QKV_FUZZ_GPT2"] = os.path.join(data, "gpt2")
    for target in TARGETS:
        corpus = tmpdir()
        crashes = os.path.join(ROOT, "build-fuzz", "crashes", target)
        os.makedirs(crashes, exist_ok=True)
        before = set(os.listdir(crashes))
        args = [os.path.join(ROOT, "build-fuzz", "fuzz", target), "-seed=1",
                "-max_total_time=%d" % seconds, "-timeout=5", "-rss_limit_mb=2048",
                "-malloc_limit_mb=1024", "-max_len=65536", "-print_final_stats=1",
                "-artifact_prefix=" + crashes + "/smoke-"]
        args += SMOKE_EXTRA.get(target, [])
        dic = os.path.join(FUZZ_DIR, "dict", target + ".dict")
        if os.path.isfile(dic):
            args.append("-dict=" + dic)
        args += [corpus, os.path.join(seeds_dir(), target)]
        cp = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=seconds + 300)
        runs = [l.split()[-1] for l in cp.stderr.splitlines()
                if l.startswith("stat::number_of_executed_units:")]
        runs += [l[1:].split(":")[0] for l in cp.stderr.splitlines()  # fork mode: "#N: cov: ..."
                 if l.startswith("#") and ": cov:" in l]
        # fork mode ends "oom/timeout/crash: a/b/c"; with -ignore_ooms only b and c fail it
        counts = [l.split("oom/timeout/crash:")[1].split()[0] for l in cp.stderr.splitlines()
                  if "oom/timeout/crash:" in l]
        known_ooms_only = ("-ignore_ooms=1" in args and counts and
                           counts[-1].split("/")[1:] == ["0", "0"])
        if cp.returncode != 0 and not known_ooms_only:
            saved = sorted(os.path.join(crashes, f) for f in set(os.listdir(crashes)) - before)
            raise AssertionError("%s: libFuzzer found a failure (%s; keep it in "
                                 "tests/fuzz/regressions/%s/):\n%s" % (
                                     target, saved, target, cp.stderr[-4000:]))
        print("      %s: %s executions in %d s, no failure" % (
            target, runs[-1] if runs else "?", seconds), flush=True)


@test
def regressions_name_real_targets():
    """A folder under tests/fuzz/regressions/ that names no target would be skipped silently."""
    if not os.path.isdir(REG_DIR):
        return
    for name in os.listdir(REG_DIR):
        if name.startswith(".") or not os.path.isdir(os.path.join(REG_DIR, name)):
            continue
        assert name in TARGETS, "tests/fuzz/regressions/%s: no tests/fuzz/%s.c" % (name, name)


@test
def seeds_cover_every_target():
    d = seeds_dir()
    for t in TARGETS:
        assert count_files(os.path.join(d, t)) >= 5, "make_seeds.py writes few seeds for " + t


if __name__ == "__main__":
    run_all()
