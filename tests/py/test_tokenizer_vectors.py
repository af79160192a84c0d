"""test_tokenizer_vectors.py -- llama.cpp's tokenizer test vectors through `qkv tokenize`.

llama.cpp's source ships models/ggml-vocab-*.gguf (vocabulary only) with .gguf.inp (texts
joined by "\\n__ggml_vocab_test__\\n") and .gguf.out (one line of ids per text: what Hugging
Face's tokenizers give, no BOS). The source comes from npm: node-llama-cpp@3.21.1 carries it as
llama/gitRelease.bundle (tools/setup.sh --test installs it into tests/node_modules and clones
the bundle to tests/node_modules/.qkv-llama.cpp). QKV_LLAMA_CPP may name a checkout instead.
Skips, saying so, when neither is there.
"""
# qkv-test: sanitize
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, Skip, qkv, run_all, test  # noqa: E402

# vocab -> why qkv does not run it
SKIP = {
    "bert-bge": "WordPiece (tokenizer.ggml.model \"bert\"): not implemented",
    "nomic-bert-moe": "Unigram (\"t5\") with a precompiled charsmap: not implemented",
    "gemma-4": "tokenizer.ggml.model \"gemma4\": not implemented",
}
SUPPORTED = ["gpt-2", "llama-bpe", "llama-spm", "qwen2", "qwen35", "phi-3", "deepseek-llm",
             "deepseek-coder", "starcoder", "falcon", "command-r", "mpt", "refact"]


def llama_cpp_models():
    env = os.environ.get("QKV_LLAMA_CPP")
    cands = [env] if env else []
    cache = os.path.join(ROOT, "tests", "node_modules", ".qkv-llama.cpp")
    cands.append(cache)
    for c in cands:
        if c and os.path.isdir(os.path.join(c, "models")):
            return os.path.join(c, "models")
    bundle = os.path.join(ROOT, "tests", "node_modules", "node-llama-cpp", "llama", "gitRelease.bundle")
    if os.path.isfile(bundle):
        r = subprocess.run(["git", "clone", "-q", bundle, cache], capture_output=True)
        if r.returncode == 0 and os.path.isdir(os.path.join(cache, "models")):
            return os.path.join(cache, "models")
    return None


MODELS = llama_cpp_models()


def cases(name):
    inp = open(os.path.join(MODELS, "ggml-vocab-%s.gguf.inp" % name), encoding="utf-8").read()
    out = open(os.path.join(MODELS, "ggml-vocab-%s.gguf.out" % name), encoding="utf-8").read()
    texts = inp.split("\n__ggml_vocab_test__\n")
    if texts and texts[-1].endswith("\n__ggml_vocab_test__"):
        texts[-1] = texts[-1][: -len("\n__ggml_vocab_test__")]
    ids = [[int(t) for t in line.split()] for line in out.split("\n")]
    ids = ids[: len(texts)]
    return texts, ids


def check_family(name):
    if MODELS is None:
        raise Skip("llama.cpp's vocab vectors absent (tools/setup.sh --test installs node-llama-cpp@3.21.1)")
    gguf = os.path.join(MODELS, "ggml-vocab-%s.gguf" % name)
    if not os.path.isfile(gguf + ".inp"):
        raise Skip("no ggml-vocab-%s.gguf.inp in this llama.cpp" % name)
    texts, want = cases(name)
    stdin = "".join(json.dumps(t) + "\n" for t in texts).encode()
    got = [json.loads(l) for l in qkv("tokenize", "--model", gguf, "--jsonl", input=stdin).stdout.decode().splitlines()]
    bad = [(t, w, g) for t, w, g in zip(texts, want, got) if w != g]
    assert len(got) == len(texts), "%s: %d results for %d texts" % (name, len(got), len(texts))
    if bad:
        t, w, g = bad[0]
        raise AssertionError("%s: %d of %d cases differ; first %r: want %s got %s" % (name, len(bad), len(texts), t, w, g))
    print("  %s: %d/%d cases match" % (name, len(texts), len(texts)))


for _name in SUPPORTED:
    def _t(n=_name):
        check_family(n)
    _t.__name__ = "llama_cpp_vectors_" + _name.replace("-", "_")
    test(_t)


@test
def llama_cpp_vectors_skipped():
    if MODELS is None:
        raise Skip("llama.cpp's vocab vectors absent")
    listed = sorted(f[len("ggml-vocab-"):-len(".gguf.inp")] for f in os.listdir(MODELS) if f.endswith(".gguf.inp"))
    for n in listed:
        if n not in SUPPORTED:
            assert n in SKIP, "vocab %s has vectors but is neither tested nor listed as skipped" % n
            print("  skip %s: %s" % (n, SKIP[n]))


run_all()
