"""Grids exported the way other samplers take them: diffusers schedulers, k-diffusion and ComfyUI.

* :mod:`.presets`  every preset: its conventions, float32 checks, and the pipeline's own scheduler config

Needs neither torch nor numba.
"""
