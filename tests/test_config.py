"""The one config loader: a TOML file's section, `--set field=value` overrides over it, and a bad value refused
in one line that names its source (the override that gave it, else the file and the field)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from namesae.config import config_from, load_config, parse_overrides
from namesae.errors import ConfigError


@dataclass(frozen=True)
class Knobs:
    """A small config with a type per field and a cross-field rule."""

    k: int = 4
    width: int = 16
    rate: float = 0.5
    kinds: tuple[str, ...] = ("image",)
    engine: str = "fast"

    def __post_init__(self) -> None:
        if self.k > self.width:
            raise ConfigError(f"k ({self.k}) must be <= width ({self.width})")
        if not 0 < self.rate <= 1:
            raise ConfigError(f"rate must be in (0, 1], got {self.rate}")


@pytest.fixture
def toml(tmp_path):
    path = tmp_path / "knobs.toml"
    path.write_text('[train]\nk = 8\nwidth = 32\nkinds = ["text", "image"]\n', encoding="utf-8")
    return path


def test_the_file_sets_the_fields_it_names_and_the_rest_keep_their_defaults(toml):
    cfg = config_from(Knobs, "train", toml)
    assert cfg == Knobs(k=8, width=32, rate=0.5, kinds=("text", "image"), engine="fast")
    assert config_from(Knobs, "train") == Knobs()
    assert config_from(Knobs, "features", toml) == Knobs()  # a missing section: the defaults
    with pytest.raises(ConfigError, match=r"knobs.toml: missing section \[features\]"):
        config_from(Knobs, "features", toml, required=True)


def test_an_override_wins_over_the_file_with_values_in_toml_syntax(toml):
    cfg = config_from(Knobs, "train", toml, ["k=12", 'kinds=["text"]', "engine=saelens", 'rate=0.25'])
    assert cfg == Knobs(k=12, width=32, rate=0.25, kinds=("text",), engine="saelens")
    assert config_from(Knobs, "train", toml, {"k": 2, "rate": None}) == Knobs(k=2, width=32, kinds=("text", "image"))
    assert parse_overrides(["k=3", 'engine="x"', "engine2=bare word"]) == {"k": 3, "engine": "x",
                                                                          "engine2": "bare word"}
    assert load_config(Knobs, toml, "train") == config_from(Knobs, "train", toml)


def test_a_bad_override_is_named_as_set_field_value(toml):
    with pytest.raises(ConfigError) as err:
        config_from(Knobs, "train", toml, ["width=64", "k=abc"])
    assert str(err.value).startswith("--set k=abc: field 'k' of Knobs must be an integer, got 'abc'")
    with pytest.raises(ConfigError) as err:  # valid type, refused by the config's own rule
        config_from(Knobs, "train", toml, ["rate=0.25", "k=40"])
    assert str(err.value) == "--set k=40: k (40) must be <= width (32)"
    with pytest.raises(ConfigError) as err:  # an option value, named by its flag
        config_from(Knobs, "train", toml, {"rate": 2.0})
    assert str(err.value) == "--rate 2.0: rate must be in (0, 1], got 2.0"
    with pytest.raises(ConfigError, match=r"^--set 'k': expected field=value$"):
        config_from(Knobs, "train", toml, ["k"])


def test_a_bad_file_value_is_named_by_file_and_field_even_with_overrides(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nk = 64\nrate = \"fast\"\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        config_from(Knobs, "train", path, ["engine=x"])
    assert str(err.value).startswith(f"{path} [train]: field 'rate' of Knobs must be a number, got 'fast'")
    path.write_text("[train]\nk = 64\n", encoding="utf-8")  # k > the default width: the file's fault
    with pytest.raises(ConfigError) as err:
        config_from(Knobs, "train", path, ["engine=x"])
    assert str(err.value) == f"{path} [train]: k (64) must be <= width (16)"
    assert config_from(Knobs, "train", path, ["width=64"]).k == 64  # an override may repair the file


def test_an_unknown_field_is_refused_in_the_file_and_as_an_override(toml, tmp_path):
    with pytest.raises(ConfigError) as err:
        config_from(Knobs, "train", toml, ["depth=3"])
    assert str(err.value).startswith("--set depth=3: unknown field(s) ['depth'] for Knobs; known fields: [")
    path = tmp_path / "typo.toml"
    path.write_text("[train]\nwidht = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        config_from(Knobs, "train", path)
    assert str(err.value).startswith(f"{path} [train]: unknown field(s) ['widht'] for Knobs")


def test_two_overrides_that_clash_are_both_named():
    with pytest.raises(ConfigError) as err:
        config_from(Knobs, "train", None, ["k=10", "width=8"])
    assert str(err.value) == "--set k=10 --set width=8: k (10) must be <= width (8)"


def test_the_train_command_names_the_bad_set_in_one_line(tmp_path, capsys, monkeypatch):
    import sys

    from namesae.cli import main

    cfg = tmp_path / "train.toml"
    cfg.write_text("[train]\nk = 4\nd_sae = 64\n", encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["namesae", "train", "--store", str(tmp_path / "none.h5"), "--out",
                                      str(tmp_path / "o"), "--config", str(cfg), "--set", "k=many"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("namesae: error: --set k=many: field 'k' of TrainConfig must be "
                                               "a number (or unset), got 'many'"), err
    assert not (tmp_path / "o").exists()


def test_dead_feature_window_follows_the_data() -> None:
    """Unset, the dead-feature window is two passes over the training rows (10 to 1,000 steps); set, it is kept."""
    from namesae.sae.config import TrainConfig

    cfg = TrainConfig(batch_size=512)
    assert cfg.dead_window(80_000) == 313
    assert cfg.dead_window(100) == 10
    assert cfg.dead_window(10_000_000) == 1000
    assert cfg.dead_window(None) == 1000
    assert TrainConfig(dead_feature_window=77).dead_window(80_000) == 77
    with pytest.raises(ConfigError, match="dead_feature_window"):
        TrainConfig(dead_feature_window=0)


def test_jumprelu_defaults_are_the_setup_that_trains_at_clip_size_and_the_demo_keeps_its_own() -> None:
    """JumpReLU defaults to Anthropic's tanh loss with straight-through to the input (DeepMind's step L0 left 99% of
    features dead at d = 1,280, bench/results/identity_rules_real.json); the demo, measured with the step L0 at
    d = 64, sets it in configs/demo.toml and in its built-in settings, so its scorecard does not move."""
    from pathlib import Path

    from namesae.config import load_toml
    from namesae.demo import DEFAULT_EMERGENCE_TRAIN, DEFAULT_TRAIN
    from namesae.sae.config import TrainConfig

    cfg = TrainConfig(architecture="jumprelu")
    assert (cfg.jumprelu_sparsity_loss, cfg.jumprelu_ste_to_input) == ("tanh", True)
    demo = load_toml(Path(__file__).resolve().parents[1] / "configs" / "demo.toml")
    for table in (demo["train"], demo["emergence_train"], DEFAULT_TRAIN, DEFAULT_EMERGENCE_TRAIN):
        assert (table["jumprelu_sparsity_loss"], table["jumprelu_ste_to_input"]) == ("step", False)
