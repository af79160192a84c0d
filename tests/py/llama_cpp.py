"""llama_cpp.py -- llama.cpp's own source for the tests that check qkv against it: where the
source is (tools/llama_cpp_src.sh clones node-llama-cpp's bundle), its gguf-py package, and its
converter's Q/K permutation. Every helper raises Skip when the source is absent."""
import ast
import os
import subprocess
import sys

import numpy as np

from harness import ROOT, Skip


def llama_src():
    """llama.cpp's source (tools/llama_cpp_src.sh), or Skip."""
    env = os.environ.get("QKV_LLAMA_CPP_SRC")
    cands = [env] if env else []
    cands.append(os.path.join(ROOT, "build", "llama.cpp-src"))
    for c in cands:
        if c and os.path.isdir(os.path.join(c, "gguf-py", "gguf")):
            return c
    cp = subprocess.run(["bash", os.path.join(ROOT, "tools", "llama_cpp_src.sh")],
                        capture_output=True, text=True)
    if cp.returncode == 0 and os.path.isdir(os.path.join(cp.stdout.strip(), "gguf-py", "gguf")):
        return cp.stdout.strip()
    raise Skip("llama.cpp source not found (npm install node-llama-cpp@3.21.1 in tests/, then "
               "tools/llama_cpp_src.sh; or set QKV_LLAMA_CPP_SRC)")


def gguf_py():
    """llama.cpp's gguf-py package, imported from its source."""
    p = os.path.join(llama_src(), "gguf-py")
    if p not in sys.path:
        sys.path.insert(0, p)
    import gguf  # noqa: E402
    return gguf


def llama_cpp_permute():
    """LlamaModel.permute, taken from llama.cpp's conversion/llama.py itself (its source, run on
    NumPy arrays: it only reshapes and swaps axes), so the un-permute is checked against the
    converter's own code rather than a transcription."""
    path = os.path.join(llama_src(), "conversion", "llama.py")
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ClassDef) and node.name == "LlamaModel":
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef) and fn.name == "permute":
                    fn.decorator_list = []
                    ns = {"Tensor": np.ndarray}
                    exec(compile(ast.Module(body=[fn], type_ignores=[]), path, "exec"), ns)
                    return ns["permute"]
    raise AssertionError("LlamaModel.permute not found in " + path)
