"""Shared helper: open a model with llama-cpp-python without llama.cpp's extra buffer types.

llama.cpp built with GGML_NATIVE on a CPU that reports AMX uses AMX tiles for Q4_0/Q4_1/Q8_0
weights (an "extra buffer type"). Where the kernel or sandbox does not grant AMX state
(`ldtilecfg` faults), `llama_decode` dies with SIGSEGV. Turning extra buffer types off
(`use_extra_bufts = false`, llama.cpp's `--no-repack`) keeps llama.cpp on its plain CPU
kernels, which is also the configuration whose numbers are easiest to reproduce.
"""
from __future__ import annotations


def open_llama(model_path: str, **kwargs):
    import llama_cpp.llama_cpp as lib
    from llama_cpp import Llama

    default = lib.llama_model_default_params

    def no_extra_bufts():
        params = default()
        params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = no_extra_bufts
    try:
        return Llama(model_path=model_path, **kwargs)
    finally:
        lib.llama_model_default_params = default
