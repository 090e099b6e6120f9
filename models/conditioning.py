"""Conditioning and guidance for a loaded model: what a network's forward gets beside (x, timestep), where it comes
from, and the guided denoiser built on it.

Sources of the conditional branch's forward arguments (merged; a key given twice is refused):

* ``cond``: a ``.safetensors`` or ``.npz`` file (read with safetensors' own loader, or ``np.load(allow_pickle=False)``:
  never unpickled), or a mapping; each array is one keyword argument of the network's forward
  (``encoder_hidden_states``, ``pooled_projections``, ``class_labels``, ``text_embeds``, ``time_ids``, ``txt_ids``,
  ``guidance`` ...) with a leading batch dimension of 1 (broadcast over the samples at the model boundary);
* ``class_label``: shorthand for ``class_labels = [N]``;
* ``prompt``: encoded by the pipeline folder's own text encoders (:mod:`.prompts`, the ``models`` extra).

The unconditional branch (guidance W != 1): ``uncond`` (a file, a mapping or another model), ``negative_prompt``,
or the family's own null (DiT's null class, a class-conditional UNet2DModel's declared null class, a labelled
mixture's -1); it takes the conditional branch's arguments it does not set itself (Flux's ``guidance``, SDXL's
``time_ids``; not those without a batch dimension, such as Flux's ``txt_ids``).  A text model with W != 1 and none of these is refused, as is a class-conditional model without a
null class.  Every refusal is one line (:class:`InputError`).
"""

from __future__ import annotations

import dataclasses
import keyword
import os
import re

import numpy as np
import torch

from ..numcore.checks import InputError, option
from .denoiser import Denoiser
from .exact import check_cond

COND_SUFFIXES = (".safetensors", ".npz")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".npy")
MAX_COND_VALUES = 2**28  # numbers in one conditioning file (a 4096 x 4096 T5 embedding is 2^24)


def _refuse_suffix(path: str, what: str) -> None:
    ext = os.path.splitext(path)[1].lower()
    if ext in COND_SUFFIXES:
        return
    if ext in PICKLE_SUFFIXES:
        kind = "a single array" if ext == ".npy" else "a pickle, which flowcert never loads (unpickling runs code)"
        raise InputError(f"`{what}` = {path!r} is {kind}: expected a .safetensors or .npz file of named arrays")
    raise InputError(f"`{what}` = {path!r} has extension {ext or '(none)'!r}: expected a .safetensors or .npz file "
                     "of named arrays")


def _tensor(name: str, key: str, array, path: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(array)) if not isinstance(array, torch.Tensor) else array
    if t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"`{name}` {path!r}: array {key} has dtype {str(t.dtype).replace('torch.', '')}: expected "
                         "real numbers or integer labels")
    if t.ndim == 0 or t.shape[0] != 1:
        raise InputError(f"`{name}` {path!r}: array {key} has shape {tuple(t.shape)}: expected a leading batch "
                         f"dimension of 1 (one conditioning, broadcast over the samples)")
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()):
            raise InputError(f"`{name}` {path!r}: array {key} holds NaN or infinite numbers: expected finite numbers")
        return t.to(torch.float32) if t.dtype != torch.float64 else t
    return t.to(torch.int64)


def read_cond(path, name: str = "cond") -> dict:
    """The named arrays of a ``.safetensors`` or ``.npz`` file as forward arguments (tensors with a leading batch
    dimension of 1; floats in float32, integers in int64).  Pickles are refused by name and never read (``.npz``
    goes through ``np.load(allow_pickle=False)``, which refuses pickled members).

    Raises:
        InputError: no such file, another format, a pickle, an array that is not a valid argument name, not of
            leading batch 1, not finite, or larger than the limit.
    """
    path = os.fspath(path)
    _refuse_suffix(path, name)
    if not os.path.isfile(path):
        raise InputError(f"`{name}` = {path!r}: no such file")
    out: dict = {}
    if path.lower().endswith(".safetensors"):
        from safetensors import safe_open

        try:
            with safe_open(path, framework="pt") as fh:
                keys = list(fh.keys())
                total = sum(int(np.prod(fh.get_slice(k).get_shape())) for k in keys)
                if total > MAX_COND_VALUES:
                    raise InputError(f"`{name}` {path!r} holds {total} numbers: expected at most {MAX_COND_VALUES}")
                arrays = {k: fh.get_tensor(k) for k in keys}
        except InputError:
            raise
        except Exception as exc:  # safetensors raises its own errors on a damaged or foreign file
            raise InputError(f"`{name}` {path!r} is not a readable safetensors file: "
                             f"{' '.join(str(exc).split())[:120]}") from None
    else:
        import zipfile

        try:
            with np.load(path, allow_pickle=False) as z:
                if not isinstance(z, np.lib.npyio.NpzFile):
                    raise InputError(f"`{name}` {path!r} is a single array: expected an .npz of named arrays")
                size = sum(i.file_size for i in z.zip.infolist())
                if size > 8 * MAX_COND_VALUES:
                    raise InputError(f"`{name}` {path!r} unpacks to {size} bytes: expected at most {8 * MAX_COND_VALUES}")
                arrays = {k: z[k] for k in z.files}
        except InputError:
            raise
        except ValueError as exc:  # pickled data with allow_pickle=False, object arrays, bad headers
            why = "holds pickled data, which flowcert never loads" if "pickle" in str(exc).lower() else \
                f"is not a valid .npz: {' '.join(str(exc).split())[:100]}"
            raise InputError(f"`{name}` {path!r} {why}: expected an .npz of numeric arrays") from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"`{name}` {path!r} is not a readable .npz file: {' '.join(str(exc).split())[:100]}") \
                from None
    if not arrays:
        raise InputError(f"`{name}` {path!r} holds no arrays: expected the network's forward arguments")
    for key, value in arrays.items():
        if not (isinstance(key, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", key)) or keyword.iskeyword(key):
            raise InputError(f"`{name}` {path!r}: array name {key!r} is not a forward argument name: expected names "
                             "such as encoder_hidden_states")
        out[key] = _tensor(name, key, value, path)
    return out


def as_cond(value, name: str) -> dict:
    """A conditioning mapping from a file path or a mapping (its values as given: tensors, arrays to tensors)."""
    if value is None:
        return {}
    if isinstance(value, (str, os.PathLike)):
        return read_cond(value, name)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InputError(f"`{name}` key {k!r}: expected forward argument names (strings)")
            out[k] = torch.as_tensor(v) if isinstance(v, (np.ndarray, list, int, float)) else v
        return out
    raise InputError(f"`{name}` = {type(value).__name__}: expected a .safetensors or .npz file, or a mapping of "
                     "forward arguments")


def _merge(into: dict, extra: dict, what: str, name: str) -> dict:
    both = sorted(set(into) & set(extra))
    if both:
        raise InputError(f"`{name}` and {what} both give {', '.join(both)}: expected each forward argument once")
    return {**into, **extra}


def _hint(needs) -> str:
    ways = ["--cond FILE (a .safetensors or .npz of these arrays)"]
    if needs is not None and "class_labels" in needs.required:
        ways.append("--class-label N")
    if needs is not None and needs.text:
        ways.append("--prompt TEXT")
    return " or ".join(ways)


def require_conditioning(needs) -> None:
    """A network that cannot run without conditioning, given none: refused in one line (before it loads)."""
    if needs is not None and needs.required:
        raise InputError(f"`cond` missing: {needs.what} needs {', '.join(needs.required)}: expected {_hint(needs)}")


def condition(model: Denoiser, *, cond=None, uncond=None, guidance=None, class_label=None, prompt=None,
              negative_prompt=None) -> Denoiser:
    """``model`` with its conditioning and, for guidance W != 1, the guided denoiser (module doc).

    Raises:
        InputError: a conditional model without conditioning; a cond missing a forward argument, with one the
            network does not take or of the wrong shape; a pickle; an unknown class; guidance NaN, negative or
            too large; W != 1 without an unconditional input where the family has no null; prompts without text
            encoders or without the ``models`` extra.
    """
    from .guidance import GuidedDenoiser, guided

    if isinstance(model, GuidedDenoiser):
        raise InputError("`model` is guided already: expected the conditional model, conditioned and guided once")
    W = 1.0 if guidance is None else option("guidance", guidance)
    needs = model.needs
    c = as_cond(cond, "cond")
    if class_label is not None:
        k = option("class_label", class_label)
        if needs is not None and needs.accepted is not None and "class_labels" not in needs.accepted:
            raise InputError(f"`class_label` = {k}: {needs.what} takes no class labels")
        if needs is not None and needs.classes is not None and k >= needs.classes:
            raise InputError(f"`class_label` = {k}: {needs.what} has classes 0..{needs.classes - 1}")
        c = _merge(c, {"class_labels": torch.tensor([k])}, "`class_label`", "cond")
    if W != 1.0 and uncond is None and negative_prompt is None and needs is not None and needs.text \
            and needs.null is None:  # refused before any text encoder loads
        raise InputError(f"`guidance` = {W:g}: {needs.what} is text-conditioned and has no unconditional input: "
                         "expected --uncond FILE or --negative-prompt TEXT (\"\" is the pipelines' empty prompt), "
                         "or guidance 1")
    encoded = None
    if prompt is not None or negative_prompt is not None:
        from .prompts import encode_prompts

        texts = [t for t in (prompt, negative_prompt) if t is not None]
        encoded = dict(zip([n for n, t in (("prompt", prompt), ("negative", negative_prompt)) if t is not None],
                           encode_prompts(model, texts)))
    if prompt is not None:
        c = _merge(c, encoded["prompt"], "`prompt`", "cond")
    if not c and model.cond:
        c = dict(model.cond)
    if not c:
        require_conditioning(needs)
    check_cond(model, c)
    cond_model = dataclasses.replace(model, cond=c) if c is not model.cond else model
    if class_label is not None:
        cond_model.name = f"{model.name} [class {k}]"
    u = uncond if isinstance(uncond, Denoiser) else as_cond(uncond, "uncond") if uncond is not None else None
    if negative_prompt is not None:
        if u is not None:
            raise InputError("`uncond` and `negative_prompt` both give the unconditional branch: expected one of them")
        u = encoded["negative"]
    if W == 1.0:
        return cond_model
    what = "uncond"
    if u is None:
        if needs is not None and needs.null is not None and c:
            u, what = dict(needs.null), "the family's null"
        elif needs is not None and needs.text:
            raise InputError(f"`guidance` = {W:g}: {needs.what} is text-conditioned and has no unconditional input: "
                             "expected --uncond FILE or --negative-prompt TEXT (\"\" is the pipelines' empty prompt), "
                             "or guidance 1")
        elif needs is not None and "class_labels" in needs.required:
            raise InputError(f"`guidance` = {W:g}: {needs.what} has no null class to guide with: expected --uncond FILE "
                             "(or flowcert.json with null_class beside its config), or guidance 1")
        elif not c:
            raise InputError(f"`guidance` = {W:g}: the model is unconditional, there is nothing to guide: expected "
                             f"{_hint(needs)}, or guidance 1")
        else:
            raise InputError(f"`guidance` = {W:g}: no unconditional input: expected --uncond FILE, or guidance 1")
    if isinstance(u, dict):
        # the branch inherits what it does not set, except keys without a batch dimension (Flux's txt_ids: built
        # for its own text length)
        shared = needs.shared if needs is not None else ()
        u = {**{k: v for k, v in c.items() if k not in u and k not in shared}, **u}
        check_cond(model, u)
    return guided(cond_model, u, W, what=what)
