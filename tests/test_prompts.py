"""--prompt and --negative-prompt: encoded by a pipeline folder's own (tiny, randomly initialised) text encoders
through the pipeline's own encode_prompt, and equal to the encoders called directly."""

from __future__ import annotations

import logging
import warnings

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

import flowcert  # noqa: E402
from flowcert.cli import main  # noqa: E402


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins of bytes that byte-level BPE tokenizers use (GPT-2's table)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def _tokenizer(max_length: int = 16):
    """A CLIP tokenizer with a character-level vocabulary (no merges): every text has its own ids."""
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    return transformers.CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length), len(vocab)


def _clip(vocab: int, cls=None, hidden: int = 12, projection: int = 10):
    torch.manual_seed(1)
    cfg = transformers.CLIPTextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=16, num_hidden_layers=2,
                                      num_attention_heads=2, max_position_embeddings=16, projection_dim=projection,
                                      bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    return (cls or transformers.CLIPTextModel)(cfg).eval()


def _quiet():
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    _quiet()
    tok, vocab = _tokenizer()
    enc = _clip(vocab)
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=12, attention_head_dim=4, norm_num_groups=4)
    folder = tmp_path_factory.mktemp("prompts") / "sd"
    diffusers.StableDiffusionPipeline(unet=unet, scheduler=diffusers.DDIMScheduler(clip_sample=False), vae=None,
                                      text_encoder=enc, tokenizer=tok, safety_checker=None, feature_extractor=None,
                                      requires_safety_checker=False).save_pretrained(folder)
    return str(folder), tok, enc


def _encode(tok, enc, text):
    ids = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return enc(ids.input_ids)[0]


def test_a_prompt_is_the_folder_encoders_own_embedding(sd_folder):
    folder, tok, enc = sd_folder
    m = flowcert.load_model(folder, prompt="a red cat")
    torch.testing.assert_close(m.cond["encoder_hidden_states"], _encode(tok, enc, "a red cat"))
    other = flowcert.load_model(folder, prompt="a blue dog")
    assert not torch.allclose(other.cond["encoder_hidden_states"], m.cond["encoder_hidden_states"])


def test_a_negative_prompt_is_the_unconditional_branch(sd_folder):
    folder, tok, enc = sd_folder
    W = 5.0
    g = flowcert.load_model(folder, prompt="a red cat", negative_prompt="", guidance=W)
    c = flowcert.load_model(folder, cond={"encoder_hidden_states": _encode(tok, enc, "a red cat")})
    u = flowcert.load_model(folder, cond={"encoder_hidden_states": _encode(tok, enc, "")})
    y = torch.randn(3, c.d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(g(y, 1.3), u(y, 1.3) + W * (c(y, 1.3) - u(y, 1.3)), rtol=1e-5, atol=1e-5)


def test_prompts_through_the_command_line(sd_folder, runner):
    folder, _, _ = sd_folder
    res = runner.invoke(main, ["grid", "--model", folder, "--prompt", "a red cat", "--negative-prompt", "blurry",
                               "--guidance", "7.5", "--steps", "4", "--kind", "logsnr"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["grid", "--model", folder, "--prompt", "a red cat", "--guidance", "7.5", "--steps",
                               "4", "--kind", "logsnr"], catch_exceptions=False)
    assert res.exit_code == 2 and "--negative-prompt" in res.output and len(res.output.strip().splitlines()) == 1


def test_sd3_prompts_use_both_clips_and_zeros_for_a_missing_t5(tmp_path):
    """SD3's encode_prompt: the CLIPs' penultimate states side by side, padded to the joint dimension, then the T5
    part (zeros without a T5); the pooled projections of both CLIPs."""
    _quiet()
    tok, vocab = _tokenizer()
    enc1 = _clip(vocab, transformers.CLIPTextModelWithProjection, hidden=8, projection=4)
    enc2 = _clip(vocab, transformers.CLIPTextModelWithProjection, hidden=8, projection=6)
    torch.manual_seed(0)
    net = diffusers.SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_layers=1,
                                          attention_head_dim=8, num_attention_heads=2, joint_attention_dim=20,
                                          caption_projection_dim=16, pooled_projection_dim=10, out_channels=4,
                                          pos_embed_max_size=16)
    diffusers.StableDiffusion3Pipeline(transformer=net, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
                                       vae=None, text_encoder=enc1, tokenizer=tok, text_encoder_2=enc2,
                                       tokenizer_2=tok, text_encoder_3=None, tokenizer_3=None
                                       ).save_pretrained(tmp_path / "sd3")
    m = flowcert.load_model(str(tmp_path / "sd3"), prompt="a cat")
    ids = tok("a cat", padding="max_length", max_length=16, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        o1, o2 = enc1(ids, output_hidden_states=True), enc2(ids, output_hidden_states=True)
    clip = torch.cat([o1.hidden_states[-2], o2.hidden_states[-2]], -1)
    clip = torch.nn.functional.pad(clip, (0, 20 - clip.shape[-1]))
    want = torch.cat([clip, torch.zeros(1, 256, 20)], -2)
    torch.testing.assert_close(m.cond["encoder_hidden_states"], want)
    torch.testing.assert_close(m.cond["pooled_projections"], torch.cat([o1[0], o2[0]], -1))
    y = torch.randn(2, m.d, dtype=torch.float64)
    assert torch.isfinite(m(y, 0.5)).all()
