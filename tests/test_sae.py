"""SAE training recovers planted dictionaries, writes SAELens checkpoints, resumes exactly, and refuses bad input."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
import torch

from namesae.errors import ConfigError, NamesaeError, SpaceMismatchError, StoreError
from namesae.sae import (
    TrainConfig,
    check_space,
    decode,
    encode,
    encode_store,
    load_sae,
    plan_run,
    split_rows,
    train_sae,
)
from namesae.sae.data import StoreStream, select_rows
from namesae.store import EmbeddingStore, write_store

D_IN, N_ATOMS, ACTIVE = 32, 32, 3


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls: one thread avoids OpenMP hand-offs that dominate on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def planted(n: int = 2000, seed: int = 0, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Rows that are sparse non-negative mixes (3 of 32 unit atoms in 32-d), names and kinds."""
    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(N_ATOMS, D_IN))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((n, N_ATOMS))
    for i in range(n):
        codes[i, rng.choice(N_ATOMS, ACTIVE, replace=False)] = rng.uniform(0.5, 1.5, ACTIVE)
    x = (scale * codes @ atoms).astype(np.float32)
    names = [f"Name {i % 80}" for i in range(n)]
    kinds = ["text" if i % 4 == 0 else "image" for i in range(n)]
    return x, atoms, names, kinds


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sae")
    x, atoms, names, kinds = planted()
    path = write_store(root / "planted.h5", x, names, names, kinds, space="synth:0:image", chunk_rows=256)
    return {"root": root, "store": path, "x": x, "atoms": atoms, "names": names, "kinds": kinds}


def recovery(atoms: np.ndarray, directions: torch.Tensor) -> float:
    """Mean over planted atoms of the best cosine with a learned decoder direction."""
    w = directions.numpy()
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    return float((atoms @ w.T).max(axis=1).mean())


ARCH_SETTINGS = {
    "standard": {},  # the default l1_coefficient
    "topk": {"k": ACTIVE},
    "batchtopk": {"k": ACTIVE},
    "jumprelu": {"l0_coefficient": 0.03},
    "matryoshka": {"k": ACTIVE},
}


def small(**kw) -> TrainConfig:
    base = {"d_sae": 2 * N_ATOMS, "batch_size": 256, "steps": 500, "lr": 3e-3, "dead_feature_window": 100, "log_every": 25,
                "holdout_fraction": 0.1}
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("arch", list(ARCH_SETTINGS))
def test_each_architecture_recovers_the_planted_dictionary(world, arch):
    sae = train_sae(world["store"], small(architecture=arch, **ARCH_SETTINGS[arch]))
    m = sae.metrics
    assert m["split"] == "heldout" and m["rows"] == sae.info["split"]["heldout_rows"] > 100
    assert m["explained_variance"] >= 0.9, m
    assert recovery(world["atoms"], sae.decoder_directions()) >= 0.9
    if arch == "topk":
        assert m["mean_l0"] == pytest.approx(ACTIVE)
    assert 0 <= m["dead_fraction"] <= 1 and 0 <= m["dense_fraction"] <= 1 and 0 <= m["dead_fraction_training"] <= 1
    assert sae.d_in == D_IN and sae.d_sae == 2 * N_ATOMS and sae.space == "synth:0:image"


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "matryoshka"])
def test_fused_step_follows_the_saelens_step(world, arch):
    """Same init and batches: the fused sparse step and SAELens's SAETrainer step give the same loss curve,
    including the dead-feature auxiliary loss (dead_feature_window is short so it is active)."""
    runs = {eng: train_sae(world["store"], small(architecture=arch, k=ACTIVE, steps=150, log_every=1,
                                                 dead_feature_window=20, engine=eng))
            for eng in ("fast", "saelens")}
    fast = np.array([r["loss"] for r in runs["fast"].train_log])
    ref = np.array([r["loss"] for r in runs["saelens"].train_log])
    assert fast.size == ref.size == 150
    np.testing.assert_allclose(fast, ref, rtol=1e-4)
    for name, value in runs["saelens"].training_model.state_dict().items():
        torch.testing.assert_close(runs["fast"].training_model.state_dict()[name], value, rtol=1e-3, atol=1e-5)
    assert runs["fast"].metrics["explained_variance"] == pytest.approx(runs["saelens"].metrics["explained_variance"],
                                                                       abs=1e-4)


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "standard"])
def test_checkpoints_reload_in_sae_lens_with_identical_codes(tmp_path, arch):
    """Inputs 7x larger than unit norm exercise the folded normalisation. Decoder norms are folded into the
    encoder on save, so the checkpoint agrees with the training model to float rounding (atol 1e-5 relative to
    the input scale, same active features), not bit for bit; namesae and sae_lens agree exactly on the file."""
    from sae_lens import SAE

    x, _, names, kinds = planted(n=1200, seed=1, scale=7.0)
    store = write_store(tmp_path / "s.h5", x, names, names, kinds, space="synth:1:image", chunk_rows=128)
    cfg = small(architecture=arch, steps=120, checkpoint_every=60, **ARCH_SETTINGS[arch])
    trained = train_sae(store, cfg, tmp_path / "run")
    ours = load_sae(tmp_path / "run")
    theirs = SAE.load_from_disk(str(tmp_path / "run"))
    xt = torch.from_numpy(x[:300])
    codes = encode(ours, xt)
    with torch.no_grad():
        torch.testing.assert_close(codes, theirs.encode(xt), rtol=0, atol=0)
        # The live training model (training units: inputs times the scale) computes the same function.
        s = trained.normalization
        with EmbeddingStore.open(store) as opened:
            train_rows = plan_run(opened, cfg).split.train
        assert s == pytest.approx(1 / np.sqrt((x[train_rows].astype(np.float64) ** 2).sum(1).mean()), rel=1e-6)
        live = trained.training_model
        feats_train, hidden = live.encode_with_hidden_pre(xt * s)
        if arch == "batchtopk":  # exported as JumpReLU: the learned threshold replaces the batch top-k
            feats_train = hidden * (hidden > live.topk_threshold)
        recon_train = live.decode(feats_train) / s
    torch.testing.assert_close(decode(ours, codes), recon_train, rtol=0, atol=1e-5 * 7)
    same = (codes != 0) == (feats_train != 0)
    assert same.all(dim=1).float().mean() >= 0.99
    assert torch.linalg.norm(ours.decoder_directions(), dim=1).sub(1).abs().max() < 1e-5
    # Intermediate checkpoints are SAELens folders too, with their step.
    mid = tmp_path / "run" / "checkpoints" / "step_000060"
    assert SAE.load_from_disk(str(mid)).cfg.d_sae == 2 * N_ATOMS
    mid_info = json.loads((mid / "namesae.json").read_text())
    assert mid_info["step"] == 60 and not mid_info["complete"]
    assert json.loads((mid / "metrics.json").read_text())["rows"] > 0
    info = json.loads((tmp_path / "run" / "namesae.json").read_text())
    assert info["complete"] and info["step"] == 120 and info["space"] == "synth:1:image"
    assert info["normalization"]["scale"] == pytest.approx(s)
    assert not (tmp_path / "run" / "state").exists()


def test_resume_after_a_kill_gives_the_uninterrupted_result(world, tmp_path):
    cfg = small(architecture="topk", k=ACTIVE, steps=90, state_every=40, checkpoint_every=30)
    whole = train_sae(world["store"], cfg, tmp_path / "whole")
    killed = train_sae(world["store"], cfg, tmp_path / "resumed", stop_after_steps=70)  # state saved at 40
    assert not killed.complete and killed.step == 70
    assert (tmp_path / "resumed" / "state" / "state.json").is_file()
    assert not (tmp_path / "resumed" / "namesae.json").exists()
    resumed = train_sae(world["store"], cfg, tmp_path / "resumed")
    assert resumed.complete and resumed.metrics["resumed_at_step"] == 40
    for name, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=1e-6)
    assert resumed.metrics["explained_variance"] == pytest.approx(whole.metrics["explained_variance"], abs=1e-6)
    assert [r["step"] for r in resumed.train_log] == [r["step"] for r in whole.train_log]
    for step in (30, 60, 90):
        a = load_sae(tmp_path / "whole" / "checkpoints" / f"step_{step:06d}").decoder_directions()
        b = load_sae(tmp_path / "resumed" / "checkpoints" / f"step_{step:06d}").decoder_directions()
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # A finished run is returned as it is; a different config is refused.
    again = train_sae(world["store"], cfg, tmp_path / "resumed")
    assert again.step == 90 and again.training_model is None
    with pytest.raises(ConfigError, match=r"different config.*'lr'"):
        train_sae(world["store"], dataclasses.replace(cfg, lr=1e-3), tmp_path / "resumed")


def test_heldout_split_is_deterministic_disjoint_and_stable(world, tmp_path):
    with EmbeddingStore.open(world["store"]) as s:
        rows = select_rows(s)
        by_row = split_rows(s, rows, 0.2, "row", seed=3)
        assert np.array_equal(np.sort(np.concatenate([by_row.train, by_row.heldout])), rows)
        assert 0.15 < by_row.heldout.size / rows.size < 0.25
        assert np.array_equal(split_rows(s, rows, 0.2, "row", seed=3).heldout, by_row.heldout)
        assert not np.array_equal(split_rows(s, rows, 0.2, "row", seed=4).heldout, by_row.heldout)
        by_name = split_rows(s, rows, 0.2, "name", seed=3)
        held_names = set(s.names[by_name.heldout])
        assert held_names and held_names.isdisjoint(set(s.names[by_name.train]))
        text = select_rows(s, kinds=("text",))
        assert set(s.kinds[text]) == {"text"} and text.size == len(s) // 4
    # Growing the store does not move old rows or names across the split.
    x, _, names, kinds = planted(n=2500)
    grown = write_store(tmp_path / "grown.h5", x, names, names, kinds, space="synth:0:image")
    with EmbeddingStore.open(grown) as g:
        assert np.array_equal(split_rows(g, select_rows(g), 0.2, "row", 3).heldout[:by_row.heldout.size],
                              by_row.heldout)
        assert set(g.names[split_rows(g, select_rows(g), 0.2, "name", 3).heldout]) == held_names


def test_stream_covers_each_epoch_once_and_resumes_mid_stream(world):
    with EmbeddingStore.open(world["store"]) as s:
        rows = select_rows(s, kinds=("image",))
        stream = StoreStream(s, rows, batch_size=100, seed=0, shuffle_buffer=512)
        it = iter(stream)
        batches = [next(it).numpy() for _ in range(30)]  # 3000 rows: two epochs of 1500
        epoch = np.concatenate(batches)[:rows.size]
        key = {r.tobytes(): i for i, r in zip(rows, s.read_rows(rows))}
        seen = sorted(key[r.tobytes()] for r in epoch)
        assert seen == rows.tolist()  # every training row exactly once per epoch, in shuffled order
        assert not np.array_equal(epoch, s.read_rows(rows))
        later = iter(StoreStream(s, rows, batch_size=100, seed=0, shuffle_buffer=512, start_sample=1700))
        np.testing.assert_array_equal(next(later).numpy(), batches[17])
        np.testing.assert_array_equal(next(later).numpy(), batches[18])


def test_encode_store_and_space_checks(world, tmp_path):
    sae = train_sae(world["store"], small(architecture="topk", k=ACTIVE, steps=20), tmp_path / "run")
    with EmbeddingStore.open(world["store"]) as s:
        blocks = list(encode_store(sae, s, rows=np.array([5, 3, 900, 901]), batch_size=3))
        assert [b.start for b in blocks] == [0, 3] and blocks[0].rows.tolist() == [5, 3, 900]
        torch.testing.assert_close(torch.cat([b.codes for b in blocks]), encode(sae, world["x"][[5, 3, 900, 901]]))
    other = write_store(tmp_path / "wide.h5", np.ones((4, 16), np.float32), ["a"] * 4, ["a"] * 4, "text",
                        space="synth:0:text")
    with EmbeddingStore.open(other) as wide, pytest.raises(SpaceMismatchError, match="dim 16 differs.*d_in 32"):
        check_space(sae, wide)
    moved = write_store(tmp_path / "moved.h5", world["x"][:10], world["names"][:10], world["names"][:10],
                        "image", space="synth:9:image")
    with EmbeddingStore.open(moved) as m, pytest.raises(SpaceMismatchError, match="synth:9:image"):
        check_space(sae, m)
    with pytest.raises(SpaceMismatchError, match=r"shape \(2, 16\)"):
        encode(sae, np.zeros((2, 16), np.float32))
    # A run folder, finished or interrupted, refuses a store of another dimension before any training.
    wide_cfg = small(architecture="topk", k=ACTIVE, steps=20, d_sae=64)
    with pytest.raises(SpaceMismatchError, match="dim 32"):
        train_sae(other, wide_cfg, tmp_path / "run")
    train_sae(world["store"], small(architecture="topk", k=ACTIVE, steps=20, state_every=10), tmp_path / "cut",
              stop_after_steps=15)
    with pytest.raises(SpaceMismatchError, match="dim 32"):
        train_sae(other, wide_cfg, tmp_path / "cut")


def test_bad_input_fails_with_a_clear_message(world, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown architecture 'gated'.*'standard', 'topk'"):
        TrainConfig(architecture="gated")
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\narchitecture = "topk"\nk = 2.5\n')
    from namesae.config import load_config
    with pytest.raises(ConfigError, match=r"c.toml \[train\].*whole number"):
        load_config(TrainConfig, toml, "train")
    with pytest.raises(ConfigError, match="at most one of steps, total_samples, epochs"):
        TrainConfig(steps=3, epochs=1.0)
    # NaN rows: stores written by hand (our writer refuses NaN).
    bad = tmp_path / "nan.h5"
    write_store(bad, world["x"][:50], world["names"][:50], world["names"][:50], "image", space="synth:0:image")
    with h5py.File(bad, "r+") as h5:
        h5["embeddings"][17, 3] = np.nan
    with pytest.raises(StoreError, match=r"nan.h5.*row 17 holds NaN"):
        train_sae(bad, small(steps=5))
    empty = EmbeddingStore.create(tmp_path / "empty.h5", dim=D_IN, space="synth:0:image")
    empty.close()
    with pytest.raises(StoreError, match="empty"):
        train_sae(tmp_path / "empty.h5", small(steps=5))
    with pytest.raises(NamesaeError, match="no rows match"):
        train_sae(world["store"], small(steps=5, names=("Nobody",)))
    with pytest.raises(ConfigError, match="k = 200 exceeds"), EmbeddingStore.open(world["store"]) as s:
        plan_run(s, small(k=200))
    with pytest.raises(NamesaeError, match="not found"):
        load_sae(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "cfg.json").write_text("{}")
    with pytest.raises(NamesaeError, match=r"missing \['sae_weights.safetensors'\]"):
        load_sae(tmp_path / "half")


def test_cli_trains_from_a_toml_config(world, tmp_path):
    from typer.testing import CliRunner

    from namesae.cli import app

    cfg = tmp_path / "train.toml"
    cfg.write_text('[train]\narchitecture = "topk"\nk = 3\nd_sae = 64\nsteps = 40\nbatch_size = 128\n'
                   'lr = 3e-3\nkinds = ["image"]\n')
    out = tmp_path / "cli-run"
    result = CliRunner().invoke(app, ["train", "--store", str(world["store"]), "--config", str(cfg), "--out",
                                      str(out), "--set", "seed=5", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and "explained variance" in result.output
    info = json.loads((out / "namesae.json").read_text())
    assert info["config"]["seed"] == 5 and info["config"]["kinds"] == ["image"]
    assert info["split"]["selected_rows"] == 1500
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"explained_variance", "mse", "mean_l0", "dead_fraction", "dense_fraction"} <= set(metrics)
    assert set(metrics["by_kind"]) == {"image"}
    bad = CliRunner().invoke(app, ["train", "--store", str(world["store"]), "--out", str(out),
                                   "--set", "architecture=gated"])
    assert isinstance(bad.exception, ConfigError) and "unknown architecture" in str(bad.exception)


def test_shipped_train_configs_load_and_size_the_real_dictionaries():
    from pathlib import Path

    from namesae.config import load_config

    root = Path(__file__).resolve().parents[1] / "configs"
    for path in sorted(root.glob("train-*.toml")):
        cfg = load_config(TrainConfig, path, "train")
        assert cfg.width(512) == 4096, path
    big_g = load_config(TrainConfig, root / "kandinsky22-bigG.toml", "train")
    vit_h = load_config(TrainConfig, root / "sd21-unclip-H.toml", "train")
    assert (big_g.width(1280), vit_h.width(1024)) == (20480, 16384)
    assert big_g.total_steps(10**7) == vit_h.total_steps(10**7) == -(-100_000_000 // 4096)


def test_dead_in_training_counts_features_silent_over_the_last_window_and_old_metrics_still_load(tmp_path):
    """dead_fraction_training: features that fired on no batch of the last dead_feature_window steps (all steps,
    when the run is shorter); a metrics.json written before the field existed still loads."""
    import json
    from types import SimpleNamespace

    from namesae.sae.metrics import SAEMetrics
    from namesae.sae.train import _dead_in_training

    trainer = SimpleNamespace(cfg=SimpleNamespace(dead_feature_window=50),
                              n_forward_passes_since_fired=torch.tensor([0, 5, 49, 50, 200]))
    assert _dead_in_training(trainer, 300) == pytest.approx(2 / 5)
    assert _dead_in_training(trainer, 5) == pytest.approx(4 / 5)  # a 5-step run: silent for all 5 steps is dead
    assert _dead_in_training(trainer, 0) is None
    old = {"format_version": 1, "rows": 10, "split": "heldout", "explained_variance": 0.9, "mse": 0.1,
           "mse_per_row": 1.0, "relative_mse": 0.1, "mean_l0": 3.0, "dead_fraction": 0.2, "dense_fraction": 0.0,
           "dense_threshold": 0.1, "architecture": "topk", "engine": "fast", "d_in": 4, "d_sae": 8, "step": 10,
           "samples_seen": 100, "train_seconds": 1.0, "train_samples_per_second": 100.0, "resumed_at_step": None,
           "steps_this_call": 10, "world_size": 1}
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    assert SAEMetrics.load(tmp_path / "metrics.json").dead_fraction_training is None
