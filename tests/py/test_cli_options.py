# qkv-test: sanitize
"""test_cli_options.py -- option parsing that must not mislead (issue 14, "hold up under abuse"):
`qkv bench --help` prints usage and runs nothing; an out-of-range value is refused with a
message that states the valid range (not "must be >= 0" for 1e30). Each refusal is exit
status 2 with "qkv CMD: error: ..." and never a crash: this file also runs against the
ASan+UBSan build. Needs no shared data and no model (options are checked before loading).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import qkv, run_all, test, tmpdir  # noqa: E402

DIR = tmpdir()


def usage_error(args, *says):
    """ARGS must exit 2 (a usage error) quickly, with each of SAYS in the message."""
    t0 = time.time()
    cp = qkv(*args, check=False, timeout=60)
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode == 2, "%r exited %d: %s" % (args, cp.returncode, err[-1500:])
    assert "Sanitizer" not in err and "runtime error" not in err, err
    for s in says:
        assert s in err, "%r: message %r lacks %r" % (args, err.strip(), s)
    assert time.time() - t0 < 30, "%r took %.1f s" % (args, time.time() - t0)
    return err


@test
def bench_help_runs_nothing():
    for args in (("--help",), ("-h",), ("attention", "--help"), ("model", "-h"), ("train", "--help"),
                 ("serve", "--help"), ("serve", "--reps", "3", "-h")):
        t0 = time.time()
        cp = qkv("bench", *args, timeout=60)
        out = cp.stdout.decode()
        assert out.startswith("usage: qkv bench"), (args, out)
        assert time.time() - t0 < 10, "qkv bench %s took %.1f s: it ran something" % (args, time.time() - t0)
        assert "GFLOP" not in out and "|" not in out, (args, out)  # no result table
        if args[0] in ("attention", "model", "train", "serve"):
            assert out.startswith("usage: qkv bench " + args[0]), out
        else:
            for name in ("attention", "model", "train", "serve"):
                assert "qkv bench " + name in out, out


@test
def bench_bad_names_and_options():
    usage_error(("bench", "frobnicate"), "unknown benchmark 'frobnicate'")
    usage_error(("bench", "frobnicate", "--help"), "unknown benchmark")
    usage_error(("bench", "--quick"), "options go after a benchmark name")
    usage_error(("bench", "attention", "--threads", "0"), "--threads must be an integer in [1, 1024]")
    usage_error(("bench", "attention", "--budget", "1e30"), "--budget must be a number of seconds in [0.01, 60]")
    usage_error(("bench", "attention", "--cli-n", "-1"), "--cli-n must be an integer in [0, 65536]")
    usage_error(("bench", "attention", "--frob"), "unknown option")
    usage_error(("bench", "model", "--reps", "99"), "--reps must be an integer in [1, 16]")
    usage_error(("bench", "model", "--gen", "1e30"), "--gen must be an integer in [2, 900]")
    usage_error(("bench", "train", "--steps", "0"), "[1, 4096]")


@test
def temperature_ranges_are_stated():
    q = os.path.join(DIR, "none.npy")  # never opened: options are checked first
    for t in ("1e30", "0", "-1", "nan", "inf", "1e-7", "x", ""):
        usage_error(("attention", "--q", q, "--k", q, "--v", q, "--temperature", t),
                    "--temperature must be a number in [1e-06, 1e+06] (got '%s'" % t)
        usage_error(("attend", "--model", DIR, "hello", "--temperature", t),
                    "--temperature must be a number in [1e-6, 1e6] (got '%s')" % t)
        usage_error(("forward", "--model", DIR, "--ids", "1,2", "--temperature", t),
                    "--temperature must be a number in [1e-6, 1e6] (got '%s')" % t)
    usage_error(("attention", "--q", q, "--k", q, "--v", q, "--scale", "1e39"), "--scale must be a number in [-3e+38, 3e+38]")
    usage_error(("attention", "--q", q, "--k", q, "--v", q, "--scale", "0"), "--scale must be nonzero")
    usage_error(("attention", "--q", q, "--k", q, "--v", q, "--threads", "1e30"), "--threads must be an integer in [1, 1024]")


@test
def other_ranges_are_stated():
    usage_error(("forward", "--model", DIR, "--ids", "1,2", "--top", "1e30"), "--top must be an integer in [1, 1000]")
    usage_error(("forward", "--model", DIR, "--ids", "1,2", "--threads", "0"), "--threads must be an integer in [1, 1024]")
    usage_error(("serve", "--model", DIR, "--port", "1e30"), "--port must be an integer in [0, 65535] (got '1e30')")
    usage_error(("serve", "--model", DIR, "--workers", "0"), "--workers must be an integer in [1, 64]")
    usage_error(("vocab", "--data", "x", "--out", DIR, "--size", "1e30"), "--size must be an integer in [257, 100000000]")
    usage_error(("tokenize", "--model", DIR, "--repeat", "1e30"), "--repeat must be an integer in [1, 1000]")
    for t in ("1e30", "-1", "nan", "x"):
        usage_error(("generate", "--model", DIR, "--ids", "1,2", "--temperature", t),
                    "--temperature must be a number in [0, 1e6] (0: greedy; got '%s')" % t)
    usage_error(("generate", "--model", DIR, "--ids", "1,2", "--top-k", "1e30"),
                "--top-k must be an integer in [0, 16777216] (0: off; got '1e30')")
    usage_error(("generate", "--model", DIR, "--ids", "1,2", "--top-p", "2"),
                "--top-p must be a number in (0, 1] (got '2')")
    usage_error(("train", "--data", "x", "--out", DIR, "--lr", "1e30"), "--lr: '1e30' is not a number in [1e-12, 10]")


if __name__ == "__main__":
    run_all()
