"""Encoders: tiny offline open_clip and DINOv2 models, the real open_clip loading path, spaces and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from namesae.encoders import KANDINSKY_2_2, SD21_UNCLIP, EncoderError, load_dino, load_encoder, tiny_configs
from namesae.errors import ConfigError

TEXTS = ["a photo of Vicki", "a photo of Barack Obama", "Mona Lisa", "a painting of Zoë", "{name}", ""]


def pictures(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, size=(40 + 3 * i, 48, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def tiny():
    return load_encoder("tiny")


def test_same_seed_gives_identical_embeddings_and_another_seed_does_not(tiny):
    a = tiny.encode_text(TEXTS)
    b = load_encoder("tiny", pretrained="seed0").encode_text(TEXTS)
    c = load_encoder("tiny", pretrained="seed1").encode_text(TEXTS)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1
    assert tiny.space("text") == "open_clip:tiny:seed0:text"
    assert tiny.space("image") == "open_clip:tiny:seed0:image"


def test_text_embeddings_have_the_right_shape_norm_and_differ_between_texts(tiny):
    x = tiny.encode_text(TEXTS)
    assert x.shape == (len(TEXTS), 64) and x.dtype == np.float32 and tiny.dim == 64
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    cos = x @ x.T
    assert cos[~np.eye(len(TEXTS), dtype=bool)].max() < 0.999  # distinct texts, distinct rows


def test_normalised_rows_are_the_raw_rows_divided_by_their_norm():
    raw = load_encoder("tiny", normalize=False)
    assert not raw.normalized
    x = raw.encode_text(TEXTS)
    assert np.abs(np.linalg.norm(x, axis=1) - 1).max() > 0.01
    np.testing.assert_allclose(x / np.linalg.norm(x, axis=1, keepdims=True),
                               load_encoder("tiny").encode_text(TEXTS), atol=1e-6)


def test_batching_does_not_change_embeddings(tiny):
    small = load_encoder("tiny", batch_size=2)
    np.testing.assert_allclose(small.encode_text(TEXTS), tiny.encode_text(TEXTS), atol=1e-5)
    np.testing.assert_allclose(small.encode_images(pictures(5)), tiny.encode_images(pictures(5)), atol=1e-5)


def test_image_embeddings_from_paths_equal_those_from_pil_images(tiny, tmp_path):
    ims = pictures(3)
    paths = []
    for i, im in enumerate(ims):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    y = tiny.encode_images(ims)
    assert y.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(tiny.encode_images(paths), y)
    with pytest.raises(EncoderError, match="missing.png: image file not found"):
        tiny.encode_images([tmp_path / "missing.png"])
    (tmp_path / "junk.png").write_text("not an image")
    with pytest.raises(EncoderError, match="junk.png: not a readable image"):
        tiny.encode_images([tmp_path / "junk.png"])


def test_wide_tiny_models_match_decoder_dimensions():
    assert load_encoder("tiny-1280").encode_text(["Ann"]).shape == (1, 1280)
    assert load_encoder("tiny-1024").encode_images(pictures(1)).shape == (1, 1024)


def test_low_precision_stays_close_to_float32(tiny):
    x = tiny.encode_text(TEXTS)
    for dtype in ("bfloat16", "float16"):
        y = load_encoder("tiny", dtype=dtype).encode_text(TEXTS)
        assert y.dtype == np.float32
        assert (x * y).sum(axis=1).min() > 0.99, dtype


def test_building_a_tiny_model_leaves_the_callers_rng_and_open_clips_registry_alone():
    import open_clip

    models = list(open_clip.list_models())
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_encoder("tiny", pretrained="seed3")
    assert torch.equal(torch.rand(3), expected)
    assert open_clip.list_models() == models and "tiny" not in models


def test_real_open_clip_loading_path_reads_a_local_checkpoint_exactly(tiny, tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "my-clip"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": tiny_configs()["open_clip"]["tiny"]
                                                               ["model_cfg"]}))
    real = load_encoder(f"local-dir:{folder}")
    assert real.space("image") == "open_clip:my-clip:local:image"
    np.testing.assert_array_equal(real.encode_text(TEXTS), tiny.encode_text(TEXTS))
    np.testing.assert_allclose(real.encode_images(pictures(2)), tiny.encode_images(pictures(2)), atol=1e-6)
    tagged = load_encoder(f"local-dir:{folder}", space_tag="ViT-B-32:openai")
    assert tagged.space("text") == "open_clip:ViT-B-32:openai:text"


def test_decoder_spaces_are_the_open_clip_models_the_decoders_were_trained_with():
    import open_clip

    for space in (KANDINSKY_2_2, SD21_UNCLIP):
        assert open_clip.get_model_config(space.model)["embed_dim"] == space.dim
        assert space.pretrained in open_clip.list_pretrained_tags_by_model(space.model)
    assert (KANDINSKY_2_2.dim, SD21_UNCLIP.dim) == (1280, 1024)


@pytest.mark.parametrize("kwargs, message", [
    ({"model": "ViT-Q-99"}, "model 'ViT-Q-99' is unknown to open_clip"),
    ({"model": "ViT-H-14"}, "needs --pretrained"),
    ({"model": "ViT-H-14", "pretrained": "laion5000"}, "neither a tag of ViT-H-14"),
    ({"model": "tiny", "pretrained": "laion2b"}, "must be 'seed<N>'"),
    ({"model": "tiny", "dtype": "float8"}, "dtype 'float8'"),
    ({"model": "tiny", "device": "tpu"}, "device 'tpu'"),
    ({"model": "tiny", "batch_size": 0}, "batch_size"),
])
def test_bad_encoder_settings_are_refused_before_any_download(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_encoder(**kwargs)


def test_missing_local_dir_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderError, match="no open_clip_config.json"):
        load_encoder(f"local-dir:{tmp_path}")


def test_tiny_dinov2_is_deterministic_and_pools_cls_or_patches():
    ims = pictures(4)
    cls = load_dino("tiny")
    x = cls.encode_images(ims)
    assert x.shape == (4, 32) and cls.dim == 32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(load_dino("tiny", batch_size=3).encode_images(ims), x)
    assert np.abs(load_dino("tiny", seed=1).encode_images(ims) - x).max() > 0.05
    mean = load_dino("tiny", pooling="mean")
    assert np.abs(mean.encode_images(ims) - x).max() > 0.05
    assert cls.space() == "dinov2:tiny-seed0:image"
    assert mean.space() == "dinov2:tiny-seed0-meanpool:image"
    with pytest.raises(ConfigError, match="pooling 'max'"):
        load_dino("tiny", pooling="max")


def test_dim_is_measured_when_the_vision_tower_does_not_state_it(tiny):
    from namesae.encoders import ClipEncoder

    class Silent(torch.nn.Module):  # a tower without `output_dim`, as timm / hf towers may be
        def __init__(self, visual):
            super().__init__()
            self.inner = visual

        def forward(self, x):
            return self.inner(x)

    tiny.model.visual, original = Silent(tiny.model.visual), tiny.model.visual
    try:
        enc = ClipEncoder(tiny.model, tiny.tokenizer, tiny.preprocess, "tiny", "tiny:seed0", "cpu", "fp32")
        assert enc.dim == 64
    finally:
        tiny.model.visual = original


def test_text_encoding_stops_at_the_longest_prompt_and_equals_the_full_context_forward(tiny):
    """encode_text runs the text tower only up to the longest prompt's end (the mask is causal and pooling is at
    the end-of-text token, so the padding after it cannot change the output); it equals open_clip's own forward."""
    import torch

    from namesae.encoders import _trimmable, encode_text_trimmed

    texts = ["Vicki", "a photo of Barack Obama", "", "a portrait painting of Zoë Ñandú in a kitchen at night, "
             "with friends and a dog and a very long tail of words that reaches the end of the context window"]
    tokens = tiny.tokenizer(texts)
    assert _trimmable(tiny.model)
    with torch.inference_mode():
        np.testing.assert_allclose(encode_text_trimmed(tiny.model, tokens).numpy(),
                                   tiny.model.encode_text(tokens).numpy(), rtol=0, atol=2e-6)
        short = tiny.tokenizer(texts[:2])
        np.testing.assert_allclose(encode_text_trimmed(tiny.model, short).numpy(),
                                   tiny.model.encode_text(short).numpy(), rtol=0, atol=2e-6)
    # A tower that pools at the last position would see the cut: it keeps the full forward.
    tiny.model.text_pool_type = "last"
    try:
        assert not _trimmable(tiny.model)
        with torch.inference_mode():
            assert torch.equal(encode_text_trimmed(tiny.model, short), tiny.model.encode_text(short))
    finally:
        tiny.model.text_pool_type = "argmax"
