#!/usr/bin/env bash
# tools/llama_bench.sh -- builds llama.cpp's llama-bench (the benchmarks' peer) once and prints
# its path.
#
# The source is node-llama-cpp@3.21.1's bundle (tools/llama_cpp_src.sh clones it); this builds it
# natively for this CPU (-DGGML_NATIVE=ON: AVX-512, VNNI, BF16 where the CPU has them), with
# OpenMP, Release, only the llama-bench target, into build/llama.cpp-bench (or $QKV_LLAMA_BENCH_DIR).
# About 10 minutes on 2 cores, once; `qkv bench model` finds the binary there. Nothing is
# downloaded: without the npm package or cmake it says so and exits 1.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${QKV_LLAMA_BENCH_DIR:-$root/build/llama.cpp-bench}
bin=$out/bin/llama-bench

src=$(bash "$root/tools/llama_cpp_src.sh") || exit 1
if [ -x "$bin" ] && [ -f "$out/.qkv-built" ] && [ ! "$src/.qkv-cloned" -nt "$out/.qkv-built" ]; then
    echo "$bin"
    exit 0
fi
command -v cmake >/dev/null 2>&1 || { echo "llama_bench: cmake not found (apt-get install cmake)" >&2; exit 1; }
command -v g++ >/dev/null 2>&1 || { echo "llama_bench: g++ not found (apt-get install g++)" >&2; exit 1; }
jobs=$(nproc 2>/dev/null || echo 2)
echo "llama_bench: building llama-bench from $src into $out ($jobs jobs, ~10 minutes on 2 cores)" >&2
cmake -S "$src" -B "$out" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_BLAS=OFF >"$out.cmake.log" 2>&1 ||
    { echo "llama_bench: cmake configure failed (see $out.cmake.log)" >&2; exit 1; }
cmake --build "$out" --target llama-bench -j "$jobs" >>"$out.cmake.log" 2>&1 ||
    { echo "llama_bench: build failed (see $out.cmake.log)" >&2; exit 1; }
git -C "$src" rev-parse HEAD >"$out/.qkv-built" 2>/dev/null || date >"$out/.qkv-built"
echo "$bin"
