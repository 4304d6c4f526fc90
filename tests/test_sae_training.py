"""Training engine claims: the fused JumpReLU step is SAELens's JumpReLU step, sweeps equal separate runs,
data-parallel runs equal one process, and the GPU-facing options are validated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from namesae.sae import TrainConfig, train_sae
from namesae.store import write_store

D_IN, N_ATOMS, ACTIVE = 32, 32, 3


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls: one thread avoids OpenMP hand-offs that dominate on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def planted(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Rows that are sparse non-negative mixes (3 of 32 unit atoms in 32-d), and their names."""
    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(N_ATOMS, D_IN))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((n, N_ATOMS))
    for i in range(n):
        codes[i, rng.choice(N_ATOMS, ACTIVE, replace=False)] = rng.uniform(0.5, 1.5, ACTIVE)
    return (codes @ atoms).astype(np.float32), [f"Name {i % 80}" for i in range(n)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    x, names = planted()
    return write_store(tmp_path_factory.mktemp("train") / "planted.h5", x, names, names, "image",
                       space="synth:0:image", chunk_rows=256)


def small(**kw) -> TrainConfig:
    base = {"d_sae": 2 * N_ATOMS, "batch_size": 256, "steps": 150, "lr": 3e-3, "dead_feature_window": 100,
            "log_every": 1, "holdout_fraction": 0.1, "architecture": "jumprelu", "l0_coefficient": 0.03,
            "jumprelu_sparsity_loss": "step", "jumprelu_ste_to_input": False}
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("path", ["pairs", "dense_window"])
def test_fused_jumprelu_step_follows_the_saelens_step(store, monkeypatch, path):
    """Same init and batches: the fused JumpReLU step and SAELens's give the same loss curve (float32, rtol 1e-4)
    and weights, whether the straight-through window is listed pair by pair or summed densely."""
    from namesae.sae import fast_jumprelu
    from namesae.sae import train as train_module

    monkeypatch.setattr(train_module, "FUSED_JUMPRELU_MIN_FEATURES", 0)  # fused at this small size too
    monkeypatch.setattr(fast_jumprelu, "DENSE_WINDOW_SHARE", 2.0 if path == "pairs" else 0.0)
    taken = []
    init = fast_jumprelu.FusedJumpReLUStep.__init__
    monkeypatch.setattr(fast_jumprelu.FusedJumpReLUStep, "__init__",
                        lambda self, *a, **k: (init(self, *a, **k), taken.append(self.paths))[0])
    runs = {eng: train_sae(store, small(engine=eng)) for eng in ("fast", "saelens")}
    assert taken == [{"pairs": 150 * (path == "pairs"), "dense_window": 150 * (path != "pairs")}]
    fast = np.array([r["loss"] for r in runs["fast"].train_log])
    ref = np.array([r["loss"] for r in runs["saelens"].train_log])
    assert fast.size == ref.size == 150
    np.testing.assert_allclose(fast, ref, rtol=1e-4)
    assert 2 < runs["fast"].train_log[-1]["l0"] < 20  # the L0 penalty bites: codes are sparse
    for name, value in runs["saelens"].training_model.state_dict().items():
        torch.testing.assert_close(runs["fast"].training_model.state_dict()[name], value, rtol=1e-3, atol=1e-5)
    assert runs["fast"].metrics["explained_variance"] == pytest.approx(runs["saelens"].metrics["explained_variance"],
                                                                       abs=1e-4)
    assert runs["fast"].metrics["explained_variance"] > 0.8


def _one_step_grads(cfg: TrainConfig, engine: str, dense_window_share: float = 0.0) -> dict[str, torch.Tensor]:
    """Gradients of every parameter after one step from a state with pairs on both sides of the threshold."""
    from namesae.sae.fast_jumprelu import FusedJumpReLUStep
    from namesae.sae.train import build_trainer, build_training_sae

    sae = build_training_sae(cfg, D_IN, 64, "x")
    with torch.no_grad():  # spread the pre-activations beyond the bandwidth, as after training
        sae.W_enc.mul_(30)
        sae.b_enc.fill_(-0.05)
    trainer = build_trainer(cfg, sae, 10, "cpu")
    grads: dict[str, torch.Tensor] = {}

    def capture(*args, **kwargs) -> None:
        grads.update({n: p.grad.clone() for n, p in sae.named_parameters()})

    trainer.optimizer.step = capture
    x = torch.from_numpy(planted(256, seed=3)[0]) * 0.2
    if engine == "fast":
        FusedJumpReLUStep(trainer, dense_window_share)(x)
    else:
        trainer.step(x)
    return grads


@pytest.mark.parametrize("loss", [{"jumprelu_sparsity_loss": "tanh"},
                                  {"jumprelu_sparsity_loss": "quadratic", "jumprelu_target_l0": 3.0},
                                  {"jumprelu_ste_to_input": True},
                                  {"jumprelu_sparsity_loss": "tanh", "jumprelu_ste_to_input": True}])  # the default
def test_fused_jumprelu_gradients_match_saelens_in_every_loss_mode(loss):
    """tanh / quadratic sparsity and the estimator passed to the inputs: each parameter's gradient (threshold
    included) equals autograd's through SAELens's Step / JumpReLU functions, on both window paths. (Over long
    runs a JumpReLU trajectory is chaotic: one pre-activation rounding across its threshold changes the step.)"""
    cfg = small(**loss)
    ref = _one_step_grads(cfg, "saelens")
    for share in (0.0, 2.0):
        ours = _one_step_grads(cfg, "fast", share)
        for name, value in ref.items():
            assert value.abs().max() > 0, name
            torch.testing.assert_close(ours[name], value, rtol=0, atol=1e-6 * float(value.abs().max()))


def test_pre_activation_loss_and_small_dictionaries_use_the_saelens_step(store, monkeypatch):
    from namesae.sae import train as train_module
    from namesae.sae.train import build_trainer, build_training_sae, make_step

    cfg = small(steps=5)  # 2 x N_ATOMS features: below FUSED_JUMPRELU_MIN_FEATURES, SAELens's step is faster
    trainer = build_trainer(cfg, build_training_sae(cfg, D_IN, 64, "x"), 5, "cpu")
    assert make_step(cfg, trainer).__class__.__name__ == "function"
    monkeypatch.setattr(train_module, "FUSED_JUMPRELU_MIN_FEATURES", 0)
    cfg = small(pre_act_loss_coefficient=3e-6, steps=5)
    trainer = build_trainer(cfg, build_training_sae(cfg, D_IN, 64, "x"), 5, "cpu")
    assert make_step(cfg, trainer).__class__.__name__ == "function"
    cfg = small(steps=5)
    trainer = build_trainer(cfg, build_training_sae(cfg, D_IN, 64, "x"), 5, "cpu")
    assert make_step(cfg, trainer).__class__.__name__ == "FusedJumpReLUStep"


def test_a_sweep_of_four_saes_gives_the_weights_of_four_separate_runs(store, tmp_path):
    """One pass over the batches trains 4 members (two widths x two init seeds, TopK and JumpReLU mixed); each
    equals its own run bit for bit, and each folder is a resumable run of its own."""
    from namesae.sae.sweep import sweep_members
    from namesae.sae.train import train_saes

    base = {"architecture": "topk", "k": ACTIVE, "batch_size": 128, "steps": 40, "lr": 3e-3, "log_every": 10,
            "holdout_fraction": 0.1, "seed": 7, "state_every": 15}
    tables = [{"name": "jr", "architecture": "jumprelu", "l0_coefficient": 0.03}, {"name": "tk"}]
    members = sweep_members(base, tables, ["d_sae=48,64", "seed=1"])
    assert [m.name for m in members] == ["jr-d_sae48-seed1", "jr-d_sae64-seed1", "tk-d_sae48-seed1",
                                         "tk-d_sae64-seed1"]
    assert all(m.config.data_seed == 7 and m.config.seed == 1 for m in members)
    configs = [m.config for m in members]
    dirs = [tmp_path / "sweep" / m.name for m in members]
    killed = train_saes(store, configs, dirs, stop_after_steps=20)  # states saved at step 15
    assert all(not s.complete for s in killed)
    swept = train_saes(store, configs, dirs)
    for cfg, sae, run_dir in zip(configs, swept, dirs):
        alone = train_sae(store, cfg, tmp_path / "alone" / run_dir.name)
        assert sae.metrics["resumed_at_step"] == 15 and sae.step == 40
        for name, value in alone.model.state_dict().items():
            torch.testing.assert_close(sae.model.state_dict()[name], value, rtol=0, atol=1e-6)
        assert (run_dir / "cfg.json").is_file()


def test_sweep_members_must_share_the_batches(store):
    from namesae.errors import ConfigError
    from namesae.sae.sweep import sweep_members
    from namesae.sae.train import train_saes

    with pytest.raises(ConfigError, match=r"must agree on \['batch_size'\]"):
        train_saes(store, [small(), small(batch_size=64)], [None, None])
    with pytest.raises(ConfigError, match="data_seed"):
        train_saes(store, [small(seed=1), small(seed=2)], [None, None])
    with pytest.raises(ConfigError, match="distinct names"):
        sweep_members({}, [{"name": "a"}, {"name": "a", "k": 8}])


def test_device_resident_rows_give_the_streamed_batches(store):
    from namesae.sae.data import ResidentStream, StoreStream, prefetched
    from namesae.store import EmbeddingStore

    with EmbeddingStore.open(store) as s:
        rows = np.arange(3, len(s), 2)
        args = (s, rows, 100, 5, 512, 0.5)
        streamed = iter(StoreStream(*args, start_sample=700))
        resident = iter(ResidentStream(*args, start_sample=700))
        ahead = prefetched(iter(StoreStream(*args, start_sample=700)), 2, "cpu")
        for _ in range(25):  # past an epoch boundary (1000 rows)
            a = next(streamed)
            torch.testing.assert_close(next(resident), a, rtol=0, atol=0)
            torch.testing.assert_close(next(ahead), a, rtol=0, atol=0)
        ahead.close()
    run = {eng: train_sae(store, small(architecture="topk", k=ACTIVE, steps=30, data_on_device=eng))
           for eng in ("yes", "no")}
    for name, value in run["no"].model.state_dict().items():
        torch.testing.assert_close(run["yes"].model.state_dict()[name], value, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["topk", "jumprelu"])
def test_bfloat16_autocast_keeps_float32_parameters_and_tracks_the_float32_run(store, arch):
    """dtype = "bfloat16": the encoder product runs in bfloat16, parameters and Adam moments stay float32, and
    the loss curve stays within 2% of float32's (bfloat16 keeps 8 bits of mantissa)."""
    kw = {"architecture": arch, "k": ACTIVE, "steps": 60, "log_every": 10}
    runs = {dt: train_sae(store, small(dtype=dt, **kw)) for dt in ("float32", "bfloat16")}
    live = runs["bfloat16"].training_model
    assert all(p.dtype == torch.float32 for p in live.parameters())
    a = np.array([r["loss"] for r in runs["bfloat16"].train_log])
    b = np.array([r["loss"] for r in runs["float32"].train_log])
    assert not np.array_equal(a, b)  # the product really ran in bfloat16
    np.testing.assert_allclose(a, b, rtol=0.02)


def test_gpu_options_are_validated():
    from namesae.errors import ConfigError

    with pytest.raises(ConfigError, match="tf32 = true needs dtype"):
        TrainConfig(tf32=True, dtype="bfloat16")
    with pytest.raises(ConfigError, match="data_on_device"):
        TrainConfig(data_on_device="gpu")
    with pytest.raises(ConfigError, match="dtype must be one of"):
        TrainConfig(dtype="float16")
    assert TrainConfig(dtype="bfloat16").param_dtype() == "float32"
    assert TrainConfig(tf32=True).tf32


KILL_RANK_1 = """
import os, sys
import namesae.sae.train as train
made = train.make_step
def make_step(config, trainer):
    step = made(config, trainer)
    if os.environ["RANK"] != "1":
        return step
    def dying(batch, want):
        if trainer.n_training_steps == 25:  # rank 0 saved its state at step 20
            os._exit(3)
        return step(batch, want)
    dying.__dict__ = step.__dict__
    return dying
train.make_step = make_step
from namesae.cli import main
sys.argv = ["namesae", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("arch", ["topk"])
def test_torchrun_data_parallel_equals_one_process_and_resumes_after_a_rank_dies(store, tmp_path, arch):
    """torchrun --nproc_per_node 2 (gloo, CPU): rank 1 is killed at step 25, the run fails; the same torchrun
    command (`-m namesae train`) resumes from the step-20 state, and the final weights equal a single-process
    run on the same global batches (1e-5)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from namesae.sae import load_sae

    torchrun = Path(sys.executable).with_name("torchrun")
    sets = ["--set", f"architecture={arch!r}".replace("'", '"'), "--set", f"k={ACTIVE}", "--set", "d_sae=64",
            "--set", "batch_size=128", "--set", "steps=40", "--set", "lr=3e-3", "--set", "state_every=10",
            "--set", "holdout_fraction=0.1", "--set", "dead_feature_window=15"]
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    base = [str(torchrun), "--nproc_per_node", "2", "--master_port", "0", "--rdzv_backend", "c10d",
            "--rdzv_endpoint", "localhost:0", "--max_restarts", "0"]
    args = ["train", "--store", str(store), "--out", str(out), "--no-progress", *sets]
    helper = tmp_path / "kill_rank_1.py"
    helper.write_text(KILL_RANK_1)
    dead = subprocess.run([*base, str(helper), *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert dead.returncode != 0
    assert (out / "state" / "state.json").is_file() and not (out / "namesae.json").exists()
    done = subprocess.run([*base, "-m", "namesae", *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = load_sae(out)
    assert ddp.info["step"] == 40 and ddp.metrics["world_size"] == 2 and ddp.metrics["resumed_at_step"] == 20
    cfg = TrainConfig(architecture=arch, k=ACTIVE, d_sae=64, batch_size=128, steps=40, lr=3e-3,
                      holdout_fraction=0.1, dead_feature_window=15)
    one = train_sae(store, cfg)
    for name, value in one.model.state_dict().items():
        torch.testing.assert_close(ddp.model.state_dict()[name], value, rtol=0, atol=1e-5)
