#!/usr/bin/python3
"""test_lessons_model.py -- the built-in model does what the lessons teach, measured on probes
it never saw in training, with the independent PyTorch model of its family (tests/py/gpt2_torch.py
or tests/py/llama_torch.py):

* agreement across an attractor: "The N1s <prep> the N2 ___" / "The N1 <prep> the N2s ___",
  the verb that agrees with the subject (were/was, are/is) more likely than the other in at
  least 90% of cases, over nouns and prepositions held out of the lesson corpus's agreement
  constructions (models/DIR/probes.json, written by tools/lessons.py);
* induction: on a random sequence of common words shown twice, some head puts at least 0.5 of
  its weight, from the tokens of the second copy, on the token after the first occurrence;
* a previous-token head: at least 0.7 mean weight on token i-1 on held-out Brown prose;
* context changes meaning: at an ambiguous word, the last layer's state is closer to the same
  sense than to the other sense in at least 80% of comparisons (sentences written here);
* whole words: the lessons' example sentences are whole-word tokens;
* `qkv heads` agrees with the same scores computed here.

Each measurement is printed with the issue's goal and whether it is met. models/qkv-lessons
meets every goal and is held to the goals; a shipped model that does not yet (the Llama sibling)
is held to FLOOR, just under what it measures, so a regression fails the test while more
training closes the gaps. Any other folder (a checkpoint being trained) is held to the goals.

QKV_LESSON_MODEL overrides the folder (to probe a checkpoint while it trains);
test_lessons_model_llama.py runs this file on models/qkv-lessons-llama, with its own floors."""
import itertools
import json
import os
import random
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import test, run_all, qkv, Skip, ROOT, shared_data  # noqa: E402
import gpt2_torch  # noqa: E402
import llama_torch  # noqa: E402

MODEL = os.environ.get("QKV_LESSON_MODEL") or os.path.join(ROOT, "models", "qkv-lessons")
# the goals, and for each shipped model the floors (just under what it measures) that
# guard the goals it does not meet yet (see the docstring); any other folder must meet the goals
GOAL = {"agreement": 0.90, "induction": 0.5, "prev": 0.7, "senses": 0.8}
FLOORS = {"qkv-lessons-llama": {"agreement": 0.86, "induction": 0.75, "prev": 0.40, "senses": 0.66}}
FLOOR = FLOORS.get(os.path.basename(os.path.normpath(MODEL)), GOAL)
torch.set_num_threads(2)
torch.set_grad_enabled(False)
_model = None


def need_model():
    for f in ("config.json", "model.safetensors", "vocab.json", "merges.txt", "probes.json"):
        if not os.path.exists(os.path.join(MODEL, f)):
            raise Skip("%s/%s is absent" % (MODEL, f))


def model():
    """The independent PyTorch model of the checkpoint's family (GPT-2 or Llama)."""
    global _model
    if _model is None:
        with open(os.path.join(MODEL, "config.json")) as f:
            family = json.load(f).get("model_type")
        ref = gpt2_torch if family == "gpt2" else llama_torch
        _model = ref.load(MODEL, dtype=torch.float32)
    return _model


def layers_heads(m):
    c = m.cfg
    return c.get("n_layer", c.get("num_hidden_layers")), c.get("n_head", c.get("num_attention_heads"))


def vocab():
    with open(os.path.join(MODEL, "vocab.json"), encoding="utf-8") as f:
        return json.load(f)


def encode(text):
    return json.loads(qkv("tokenize", "--model", MODEL, input=text.encode()).stdout)


def check(name, value):
    """Asserts the goal when the shipped model meets it, else the floor; says which."""
    met = value >= GOAL[name]
    print("      %s: %.3f, goal %.2f: %s" % (name, value, GOAL[name],
                                             "met" if met else "NOT met yet (floor %.2f)" % FLOOR[name]))
    assert value >= min(GOAL[name], FLOOR[name]), "%s %.3f below %.3f" % (name, value, FLOOR[name])


def single(v, word):
    """Id of " word" as one token, or None."""
    return v.get("\u0120" + word)


@test
def agreement_across_an_attractor_on_held_out_nouns():
    need_model()
    with open(os.path.join(MODEL, "probes.json")) as f:
        probes = json.load(f)
    v = vocab()
    nouns = [(s, p) for s, p in probes["heldout_nouns"]
             if single(v, s) is not None and single(v, p) is not None and s != p]
    preps = [p for p in probes["heldout_preps"] if single(v, p) is not None]
    assert len(nouns) >= 40 and preps, (len(nouns), preps)
    verbs = [(single(v, "were"), single(v, "was")), (single(v, "are"), single(v, "is"))]
    the, The = single(v, "the"), v.get("The")
    rng = random.Random(7)
    m = model()
    right = total = 0
    wrong = []
    for k in range(240):
        (s1, p1), (s2, p2) = rng.sample(nouns, 2)
        prep = preps[k % len(preps)]
        subj_plural = k % 2 == 0
        ids = [The, single(v, p1 if subj_plural else s1), single(v, prep), the,
               single(v, s2 if subj_plural else p2)]
        logits = m(ids)[-1]
        for pl_id, sg_id in verbs:
            ok = (logits[pl_id] > logits[sg_id]) == subj_plural
            right += int(ok)
            total += 1
            if not ok and len(wrong) < 8:
                wrong.append("The %s %s the %s" % (p1 if subj_plural else s1, prep, s2 if subj_plural else p2))
    # the lessons' own example
    ids = encode("The keys to the cabinet")
    lg = m(ids)[-1]
    p = torch.softmax(lg, -1)
    print("      'The keys to the cabinet': were %.4f was %.4f; 'The key to the cabinets': "
          % (p[verbs[0][0]], p[verbs[0][1]]), end="")
    lg2 = m(encode("The key to the cabinets"))[-1]
    p2 = torch.softmax(lg2, -1)
    print("were %.4f was %.4f" % (p2[verbs[0][0]], p2[verbs[0][1]]))
    acc = right / total
    print("      agreement on %d held-out cases (%d held-out nouns, prepositions %s): %.1f%% right "
          "(goal >= 90%%); e.g. wrong: %s" % (total, len(nouns), "/".join(preps), 100 * acc, "; ".join(wrong[:4])))
    check("agreement", acc)


def common_words(v, n=1000):
    """Space-prefixed lowercase words of 3+ letters, most frequent first (BPE ids grow as
    merges get rarer)."""
    ws = sorted((i, t) for t, i in v.items()
                if t.startswith("\u0120") and len(t) >= 4 and t[1:].isascii() and t[1:].isalpha() and t[1:].islower())
    return [i for i, _ in ws[:n]]


def induction_scores(m, v, length=20, reps=8, seed=3):
    pool = common_words(v)
    rng = random.Random(seed)
    L, H = layers_heads(m)
    score = np.zeros((L, H))
    for _ in range(reps):
        seq = rng.sample(pool, length)
        _, attn = m(seq + seq, return_attn=True)
        rows = np.arange(length, 2 * length)
        for l in range(L):
            score[l] += attn[l].numpy()[:, rows, rows - length + 1].mean(axis=1)
    return score / reps


@test
def induction_head():
    need_model()
    s = induction_scores(model(), vocab())
    best = np.unravel_index(s.argmax(), s.shape)
    print("      best induction head %d.%d: %.3f of its weight on the token after the earlier "
          "occurrence (goal >= 0.5); per layer best: %s" % (best[0], best[1], s.max(),
                                                             " ".join("%.3f" % x for x in s.max(axis=1))))
    check("induction", s.max())


def heldout_windows(n_windows=12, T=128):
    path = os.path.join(MODEL, "heldout.txt")
    if not os.path.exists(path):
        path = os.path.join(ROOT, "models", "qkv-brown", "heldout.txt")
    with open(path, "rb") as f:
        ids = json.loads(qkv("tokenize", "--model", MODEL, input=f.read()).stdout)
    return [ids[i:i + T] for i in range(0, len(ids) - T, T)][:n_windows]


@test
def previous_token_head():
    need_model()
    m = model()
    L, H = layers_heads(m)
    prev = np.zeros((L, H))
    ws = heldout_windows()
    for w in ws:
        _, attn = m(w, return_attn=True)
        N = len(w)
        for l in range(L):
            prev[l] += attn[l].numpy()[:, np.arange(1, N), np.arange(0, N - 1)].mean(axis=1)
    prev /= len(ws)
    best = np.unravel_index(prev.argmax(), prev.shape)
    print("      best previous-token head %d.%d: %.3f on token i-1 on held-out Brown prose (goal >= 0.7)"
          % (best[0], best[1], prev.max()))
    check("prev", prev.max())


# Sentences written for this test (not from the lesson corpus's templates): the deciding words
# come before the ambiguous word, so a left-to-right model can use them.
SENSE_PROBES = {
    "bank": {
        "river": ["The fishermen pulled their boat out of the water and up onto the bank",
                  "Tall reeds and willows grew thick along the muddy bank",
                  "The children waded across the shallow stream to the far bank",
                  "After the flood the river had cut away half of the bank",
                  "The frogs were croaking in the grass by the river bank",
                  "He sat with his fishing rod on the grassy bank"],
        "money": ["She saved her salary every month and put the money in the bank",
                  "To buy the house they needed a loan from the bank",
                  "He wrote a check and cashed it at the bank",
                  "The robbers stole the cash and the gold from the bank",
                  "My account earns a little interest at the bank",
                  "The teller counted the dollars and the coins at the bank"],
    },
    "plant": {
        "garden": ["She watered the flowers and the seeds and the young plant",
                   "In the sunny pot on the window grew a green plant",
                   "The roots and leaves of the tomato plant",
                   "He dug the soil in the garden and set out each plant"],
        "factory": ["The workers and the engineers went on strike at the steel plant",
                    "The company closed the old power plant",
                    "Smoke from the machines of the chemical plant",
                    "The union met the managers of the factory and the plant"],
    },
    "spring": {
        "season": ["After the long cold winter and the snow came the spring",
                   "The warm weather of April and May: the spring",
                   "The months of the year are summer, winter, autumn and spring",
                   "Every year the blossoms open in the spring"],
        "water": ["They climbed the hill to drink the cold water from the spring",
                  "Clear water bubbled from the rocks at the spring",
                  "The well was dry, so they filled the bucket at the spring",
                  "The stream in the valley is fed by a mountain spring"],
    },
    "match": {
        "fire": ["To light the candle and the stove he struck a match",
                 "In the dark kitchen she found the box and lit a match",
                 "The smoke and flame of the burning match",
                 "He needed a fire, so he looked for a dry match"],
        "game": ["The tennis players and the crowd waited for the match",
                 "The team trained all week for the big match",
                 "The referee blew the whistle to start the match",
                 "The score was tied at the end of the match"],
    },
}


def last_state(m, text, word):
    ids = encode(text)
    v = vocab()
    wid = single(v, word)
    assert wid in ids, (text, word)
    i = len(ids) - 1 - ids[::-1].index(wid)
    _, _, hidden = m(ids, return_all=True)
    return hidden[-1][i].double()


@test
def context_changes_meaning():
    need_model()
    m = model()
    right = total = 0
    per_word = []
    for word, senses in SENSE_PROBES.items():
        (na, sa), (nb, sb) = senses.items()
        st = {s: [last_state(m, t, word) for t in senses[s]] for s in (na, nb)}
        r = t = 0
        for s, o in ((na, nb), (nb, na)):
            for a, b in itertools.permutations(range(len(st[s])), 2):
                for c in range(len(st[o])):
                    cs = torch.nn.functional.cosine_similarity
                    r += int(cs(st[s][a], st[s][b], 0) > cs(st[s][a], st[o][c], 0))
                    t += 1
        per_word.append("%s %.0f%%" % (word, 100 * r / t))
        right += r
        total += t
    acc = right / total
    print("      same sense closer than the other sense (last layer): %.1f%% of %d comparisons "
          "(goal >= 80%%): %s" % (100 * acc, total, ", ".join(per_word)))
    check("senses", acc)


# The lessons' example sentences (shared/seeds), and the playground's.
LESSON_SENTENCES = ["The bank by the river was steep",
                    "I went to the bank to deposit money",
                    "the keys to the cabinet were",
                    "We walked along the river and sat down on the bank",
                    "The word river says: I am related to water and nature",
                    "When you read the word bank, how do you know if it is a river bank or a money bank?"]


@test
def lesson_sentences_are_whole_words():
    need_model()
    sd = shared_data()
    if sd:
        seeds = os.path.join(os.path.dirname(sd), "seeds")
        text = " ".join(open(os.path.join(seeds, f), encoding="utf-8").read() for f in sorted(os.listdir(seeds)))
        for s in LESSON_SENTENCES[:3]:
            assert s.lower() in text.lower(), "not in shared/seeds: %s" % s
    v = vocab()
    inv = {i: t for t, i in v.items()}
    bad = []
    for s in LESSON_SENTENCES:
        words = s.replace(",", " ,").replace(":", " :").replace("?", " ?").split()
        toks = [inv[i] for i in encode(s)]
        if len(toks) != len(words):
            bad.append("%s -> %s" % (s, "|".join(t.replace("\u0120", " ") for t in toks)))
    assert not bad, bad


@test
def qkv_heads_agrees():
    """`qkv heads --json` (the C probe) against the same scores computed here in PyTorch on
    the probe it documents: a previous-token head found by both, and the JSON's shape."""
    need_model()
    out = json.loads(qkv("heads", "--model", MODEL, "--json").stdout)
    m = model()
    L, H = layers_heads(m)
    assert out["n_layer"] == L and out["n_head"] == H and len(out["heads"]) == L * H
    prev = np.array([h["scores"]["prev"] for h in out["heads"]]).reshape(L, H)
    ind = np.array([h["scores"]["induction"] for h in out["heads"]]).reshape(L, H)
    for h in out["heads"]:
        tags = set(h["tags"])
        assert ("previous-token" in tags) == (h["scores"]["prev"] >= out["thresholds"]["prev"]), h
        assert ("induction" in tags) == (h["scores"]["induction"] >= out["thresholds"]["induction"]), h
    ws = heldout_windows(4)
    tp = np.zeros((L, H))
    for w in ws:
        _, attn = m(w, return_attn=True)
        for l in range(L):
            tp[l] += attn[l].numpy()[:, np.arange(1, len(w)), np.arange(0, len(w) - 1)].mean(axis=1)
    tp /= len(ws)
    ti = induction_scores(m, vocab())
    print("      qkv heads: best prev %s %.3f (torch on Brown %s %.3f); best induction %s %.3f "
          "(torch %s %.3f)" % (np.unravel_index(prev.argmax(), prev.shape), prev.max(),
                               np.unravel_index(tp.argmax(), tp.shape), tp.max(),
                               np.unravel_index(ind.argmax(), ind.shape), ind.max(),
                               np.unravel_index(ti.argmax(), ti.shape), ti.max()))
    assert np.unravel_index(prev.argmax(), prev.shape) == np.unravel_index(tp.argmax(), tp.shape)
    assert abs(prev.max() - tp.max()) < 0.1
    assert abs(ind.max() - ti.max()) < 0.15


run_all()
