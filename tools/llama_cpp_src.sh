#!/usr/bin/env bash
# tools/llama_cpp_src.sh [NODE_MODULES] -- prints the path of a llama.cpp source checkout,
# cloning it first if needed.
#
# llama.cpp's source reaches this machine through the npm registry: node-llama-cpp (pinned
# 3.21.1 by the tests' package.json) ships it as a git bundle, llama/gitRelease.bundle. This
# clones that bundle once into a cache (build/llama.cpp-src, or $QKV_LLAMA_CPP_SRC) and
# prints the path; the tests read models/ggml-vocab-*.gguf (+ .inp/.out) and gguf-py/ from
# there. NODE_MODULES defaults to tests/node_modules. Nothing is downloaded here: without
# the npm package it prints nothing and exits 1, and callers skip.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
nm=${1:-$root/tests/node_modules}
cache=${QKV_LLAMA_CPP_SRC:-$root/build/llama.cpp-src}
bundle=$nm/node-llama-cpp/llama/gitRelease.bundle

if [ -f "$cache/models/ggml-vocab-gpt-2.gguf" ] && [ -d "$cache/gguf-py/gguf" ]; then
    # refresh when the bundle is newer than the checkout (npm updated the package)
    if [ ! -f "$bundle" ] || [ ! "$bundle" -nt "$cache/.qkv-cloned" ]; then
        echo "$cache"
        exit 0
    fi
fi
if [ ! -f "$bundle" ]; then
    echo "llama_cpp_src: $bundle not found (npm install node-llama-cpp@3.21.1 in tests/)" >&2
    exit 1
fi
tmp="$cache.tmp$$"
rm -rf "$tmp"
mkdir -p "$(dirname "$cache")"
git clone --quiet "$bundle" "$tmp" 2>/dev/null || {
    rm -rf "$tmp"
    echo "llama_cpp_src: git clone of $bundle failed" >&2
    exit 1
}
touch "$tmp/.qkv-cloned"
rm -rf "$cache"
mv "$tmp" "$cache"
echo "$cache"
