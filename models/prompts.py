"""Prompts encoded by a pipeline folder's own text encoders (optional extra ``flowcert[models]``: transformers).

The pipeline class named in ``model_index.json`` is built from the folder with its text encoders and tokenizers
only (every other component left out; the denoiser is the one already loaded; safetensors weights only, nothing
downloaded), and its own ``encode_prompt`` encodes the text, so the embeddings are exactly those the pipeline
would pass to its network:

==============================  ===================================================================================
``StableDiffusionPipeline``     ``encoder_hidden_states``
``StableDiffusionXLPipeline``   ``encoder_hidden_states``, ``text_embeds`` (pooled) and ``time_ids`` (the
                                pipeline's own, for the latent size times the VAE factor, no crop)
``StableDiffusion3Pipeline``    ``encoder_hidden_states``, ``pooled_projections`` (T5 part zeros without a T5)
``FluxPipeline``                ``encoder_hidden_states``, ``pooled_projections``, ``txt_ids``
==============================  ===================================================================================
"""

from __future__ import annotations

import os

from ..numcore.checks import InputError, require


def _sd(pipe, text, model):
    emb = pipe.encode_prompt(text, "cpu", 1, False)[0]
    return {"encoder_hidden_states": emb}


def _vae_factor(folder: str) -> int:
    path = os.path.join(folder, "vae", "config.json")
    if os.path.isfile(path):
        from ..numcore.io import read_json

        blocks = read_json(path, "`model` vae config").get("block_out_channels")
        if isinstance(blocks, list) and blocks:
            return 2 ** (len(blocks) - 1)
    return 8  # what the pipelines take without a VAE


def _sdxl(pipe, text, model):
    emb, _, pooled, _ = pipe.encode_prompt(prompt=text, device="cpu", num_images_per_prompt=1,
                                           do_classifier_free_guidance=False)
    f = _vae_factor(model.info["pipeline"])
    size = (model.shape[1] * f, model.shape[2] * f)
    proj = pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None else pooled.shape[-1]
    time_ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=emb.dtype, text_encoder_projection_dim=proj)
    return {"encoder_hidden_states": emb, "text_embeds": pooled, "time_ids": time_ids}


def _sd3(pipe, text, model):
    emb, _, pooled, _ = pipe.encode_prompt(prompt=text, prompt_2=None, prompt_3=None, device="cpu",
                                           num_images_per_prompt=1, do_classifier_free_guidance=False)
    return {"encoder_hidden_states": emb, "pooled_projections": pooled}


def _flux(pipe, text, model):
    emb, pooled, ids = pipe.encode_prompt(prompt=text, prompt_2=None, device="cpu", num_images_per_prompt=1)
    return {"encoder_hidden_states": emb, "pooled_projections": pooled, "txt_ids": ids[None]}


PIPELINES = {"StableDiffusionPipeline": _sd, "StableDiffusionXLPipeline": _sdxl,
             "StableDiffusion3Pipeline": _sd3, "FluxPipeline": _flux}


def _index(folder: str) -> dict:
    from ..numcore.io import read_json

    doc = read_json(os.path.join(folder, "model_index.json"), "`model` model_index.json")
    if not isinstance(doc, dict):
        raise InputError(f"`model` model_index.json in {folder!r} is not a JSON object")
    return doc


def _present(folder: str, index: dict, comp: str) -> bool:
    entry = index.get(comp)
    return isinstance(entry, list) and entry[:1] != [None] and os.path.isdir(os.path.join(folder, comp))


def encode_prompts(model, texts: list[str]) -> list[dict]:
    """The forward arguments of each text, encoded by the model's pipeline folder's own text encoders.

    Raises:
        InputError: a model that is not in a pipeline folder, a folder without text encoders, a pipeline class
            whose prompts flowcert does not encode, transformers not installed, encoders that do not load.
    """
    for t in texts:
        if not isinstance(t, str):
            raise InputError(f"`prompt` = {t!r}: expected text")
    folder = getattr(model, "info", {}).get("pipeline")
    if folder is None:
        raise InputError("`prompt`: the model is not a pipeline folder with text encoders (model_index.json): "
                         "expected --cond FILE with the prompt's embeddings")
    index = _index(folder)
    encoders = [c for c in sorted(index) if c.startswith("text_encoder") and _present(folder, index, c)]
    if not encoders:
        raise InputError(f"`prompt`: the pipeline folder {folder!r} has no text encoders (its model_index.json names "
                         "none with a folder): expected --cond FILE with the prompt's embeddings")
    name = index.get("_class_name")
    if name not in PIPELINES:
        raise InputError(f"`prompt`: pipeline {name!r}: prompts are encoded for {', '.join(PIPELINES)}: expected "
                         "--cond FILE with the prompt's embeddings")
    require("transformers", "models", "`--prompt` (the pipeline's own text encoders)")
    import diffusers

    from .families import quiet_libraries

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    keep = {c for c in index if c.startswith(("text_encoder", "tokenizer")) and _present(folder, index, c)}
    drop = {c: None for c in index if not c.startswith("_") and isinstance(index[c], list) and c not in keep}
    denoiser = next((c for c in ("unet", "transformer") if c in index), None)
    if denoiser is not None and getattr(model, "module", None) is not None:
        drop[denoiser] = model.module
    if "scheduler" in drop:
        drop.pop("scheduler")  # cheap, and some pipelines read it when built
    cls = getattr(diffusers, name)
    try:
        with quiet_libraries():
            pipe = cls.from_pretrained(folder, local_files_only=True, use_safetensors=True, **drop)
    except Exception as exc:  # transformers and diffusers raise OSError, ValueError, EnvironmentError...
        raise InputError(f"`prompt`: the text encoders of {folder!r} do not load: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}") from None
    import torch

    out = []
    with torch.no_grad(), quiet_libraries():
        for text in texts:
            try:
                enc = PIPELINES[name](pipe, text, model)
            except Exception as exc:  # a tokenizer or encoder that does not fit the pipeline
                raise InputError(f"`prompt`: {name}.encode_prompt failed on the folder's encoders: "
                                 f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
            out.append({k: v.detach().to("cpu") for k, v in enc.items()})
    return out
