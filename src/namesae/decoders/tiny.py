"""Tiny randomly-initialised Kandinsky 2.2 and SD 2.1 unCLIP pipelines, built offline, saved with `save_pretrained`.

They have the real pipelines' classes and wiring (as diffusers' own tests build them) at toy sizes, so the CLI,
tests, benchmarks and the demo load them by path like any model. Their images are noise-like: they exercise code,
they show nothing. The CLIP tokenizer is real: its vocab.json / merges.txt are written from the BPE table that
ships inside open_clip (`bpe_simple_vocab_16e6.txt.gz`), so no download is needed.

    build_tiny_pipeline("kandinsky22", "runs/tiny-k22", seed=0, dim=64)     # + DIR/prior, DIR/namesae_decoder.json
    build_tiny_pipeline("sd21-unclip", "runs/tiny-sd", dim=64, space="synth:0:image")

`dim` is the image-embedding dimension; `space` the store space it claims (default: the tiny open_clip encoder of
that dim, `open_clip:tiny:seed0:image` for 64, whose `load_encoder` embeds the generated images). Same seed, same
weights.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from namesae.decoders.spaces import META_FILE, PIPELINES, encoder_for_space
from namesae.errors import ConfigError
from namesae.io import atomic_dir, atomic_write_json

TINY_DEFAULTS = {"height": 32, "width": 32, "steps": 2, "prior_steps": 2}
_TINY_ENCODERS = {64: "tiny", 1024: "tiny-1024", 1280: "tiny-1280"}


def write_clip_tokenizer_files(out_dir: str | Path) -> Path:
    """vocab.json and merges.txt of the CLIP BPE tokenizer (49,408 tokens), from open_clip's packaged BPE table."""
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe) as fh:
        lines = fh.read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]  # the slice open_clip's SimpleTokenizer uses
    byte_tokens = list(bytes_to_unicode().values())
    vocab = byte_tokens + [t + "</w>" for t in byte_tokens] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False),
                                    encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return out


def clip_tokenizer(pad_token: str) -> Any:
    """A transformers CLIPTokenizer with the real CLIP vocabulary (pad '!' like SD 2, '<|endoftext|>' like
    Kandinsky's prior), max length 77."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_clip_tokenizer_files(tmp)
        return CLIPTokenizer(vocab=str(Path(tmp) / "vocab.json"), merges=str(Path(tmp) / "merges.txt"),
                             pad_token=pad_token, model_max_length=77)


def _text_config(hidden: int, projection: int, pad_id: int) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(bos_token_id=49406, eos_token_id=49407, pad_token_id=pad_id, hidden_size=hidden,
                          projection_dim=projection, intermediate_size=37, layer_norm_eps=1e-5, num_attention_heads=4,
                          num_hidden_layers=2, vocab_size=49408, max_position_embeddings=77)


def _vision_encoder(dim: int) -> Any:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, image_size=32, projection_dim=dim,
                                                          intermediate_size=37, num_attention_heads=4, num_channels=3,
                                                          num_hidden_layers=2, patch_size=8))


def _image_processor() -> Any:
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(crop_size=32, size=32, do_center_crop=True, do_normalize=True, do_resize=True,
                              resample=3)


def tiny_kandinsky(dim: int) -> tuple[Any, Any]:
    """(KandinskyV22Pipeline, KandinskyV22PriorPipeline) with random tiny weights taking dim-d image embeddings."""
    from diffusers import (
        DDIMScheduler,
        KandinskyV22Pipeline,
        KandinskyV22PriorPipeline,
        PriorTransformer,
        UnCLIPScheduler,
        UNet2DConditionModel,
        VQModel,
    )
    from transformers import CLIPTextModelWithProjection

    unet = UNet2DConditionModel(
        in_channels=4, out_channels=8, addition_embed_type="image", encoder_hid_dim=dim,
        encoder_hid_dim_type="image_proj", down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(32, 64), layers_per_block=1,
        cross_attention_dim=32, attention_head_dim=4, resnet_time_scale_shift="scale_shift", class_embed_type=None)
    movq = VQModel(block_out_channels=[32, 64], down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
                   in_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8, norm_type="spatial",
                   num_vq_embeddings=12, out_channels=3,
                   up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"], vq_embed_dim=4)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
                              thresholding=False)
    decoder = KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=movq)

    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=12, embedding_dim=dim, num_layers=1)
    # clip_std defaults to 0, which would post-process every latent to clip_mean (diffusers' tests do the same).
    prior.clip_std = torch.nn.Parameter(torch.ones(prior.clip_std.shape))
    # The prior projects text hidden states of width embedding_dim, so the text tower is dim wide.
    text = CLIPTextModelWithProjection(_text_config(dim, dim, pad_id=49407))
    prior_scheduler = UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample",
                                      num_train_timesteps=1000, clip_sample=True, clip_sample_range=10.0)
    prior_pipe = KandinskyV22PriorPipeline(prior=prior, image_encoder=_vision_encoder(dim), text_encoder=text,
                                           tokenizer=clip_tokenizer("<|endoftext|>"), scheduler=prior_scheduler,
                                           image_processor=_image_processor())
    return decoder, prior_pipe


def tiny_unclip(dim: int) -> Any:
    """A StableUnCLIPImg2ImgPipeline with random tiny weights taking dim-d image embeddings."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableUnCLIPImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(32, 64), attention_head_dim=(2, 4),
        # The class embedding is the noise-augmented image embedding concatenated with its noise-level embedding.
        class_embed_type="projection", projection_class_embeddings_input_dim=2 * dim, cross_attention_dim=32,
        layers_per_block=1, upcast_attention=True, use_linear_projection=True)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              prediction_type="v_prediction", set_alpha_to_one=False, steps_offset=1)
    return StableUnCLIPImg2ImgPipeline(
        feature_extractor=_image_processor(), image_encoder=_vision_encoder(dim),
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=dim),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=clip_tokenizer("!"), text_encoder=CLIPTextModel(_text_config(32, 32, pad_id=0)), unet=unet,
        scheduler=scheduler, vae=AutoencoderKL(block_out_channels=(32,), norm_num_groups=8, latent_channels=4))


def default_tiny_space(dim: int) -> str:
    """The space of the tiny open_clip encoder of this dim (what embeds the tiny decoder's images), else a label."""
    return f"open_clip:{_TINY_ENCODERS[dim]}:seed0:image" if dim in _TINY_ENCODERS else f"tiny-decoder:{dim}:image"


def build_tiny_pipeline(kind: str, out_dir: str | Path, seed: int = 0, dim: int = 64, space: str | None = None,
                        overwrite: bool = False) -> Path:
    """Build a tiny random `kind` pipeline taking dim-d embeddings of `space` and save it to out_dir (atomically)."""
    if kind not in PIPELINES:
        raise ConfigError(f"pipeline {kind!r} is unknown; use one of {PIPELINES}")
    if not isinstance(dim, int) or dim < 8 or dim % 4:
        raise ConfigError(f"dim must be a multiple of 4, at least 8 (attention heads, sin/cos embeddings); got {dim}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out}: exists and is not empty; pass overwrite=True or another folder")
    space = space or default_tiny_space(dim)
    with atomic_dir(out) as tmp, torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
        torch.manual_seed(seed)
        if kind == "kandinsky22":
            decoder, prior = tiny_kandinsky(dim)
            decoder.save_pretrained(tmp)
            prior.save_pretrained(tmp / "prior")
        else:
            tiny_unclip(dim).save_pretrained(tmp)
        meta = {"format_version": 1, "kind": kind, "tiny": True, "seed": seed, "space": space, "dim": dim,
                "encoder": encoder_for_space(space), "prior": "prior" if kind == "kandinsky22" else None,
                "defaults": TINY_DEFAULTS,
                "note": "random weights built by namesae.decoders.tiny: exercises code, shows nothing"}
        atomic_write_json(tmp / META_FILE, meta, indent=2)
    return out
