#!/usr/bin/python3
"""test_lessons_model_llama.py -- test_lessons_model.py's probes on the Llama-style sibling of
the built-in model (models/qkv-lessons-llama), with the independent PyTorch Llama and that
model's own floors."""
import os
import runpy

here = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("QKV_LESSON_MODEL", os.path.join(here, "..", "..", "models", "qkv-lessons-llama"))
runpy.run_path(os.path.join(here, "test_lessons_model.py"), run_name="__main__")
