"""`train_sae`: train an SAELens SAE on an embedding store, with checkpoints, resume and held-out metrics.

Run folder: the final SAE at the root (`cfg.json`, `sae_weights.safetensors`, `namesae.json`, `metrics.json`,
`train_log.json`), intermediate SAEs in `checkpoints/step_XXXXXX/` (same files), and while running the resumable
state in `state/`. Running the same call again on an unfinished folder resumes it; on a finished one it returns
the SAE without training.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from namesae.config import config_to_dict
from namesae.errors import ConfigError, NamesaeError, SpaceMismatchError, StoreError
from namesae.sae.config import SAELENS_ARCHITECTURE, TOPK_FAMILY, TrainConfig
from namesae.sae.data import (
    RowSplit,
    StoreStream,
    evenly_spaced,
    mean_squared_norm,
    read_names_file,
    select_rows,
    split_rows,
)
from namesae.sae.metrics import evaluate
from namesae.sae.model import (
    CFG_FILE,
    INFO_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    TrainedSAE,
    header,
    inference_model,
    load_sae,
    write_json,
    write_saelens_files,
    write_saelens_folder,
)
from namesae.sae.state import clear_state, find_state, load_state, read_state_meta, save_state
from namesae.store import EmbeddingStore

log = logging.getLogger(__name__)

TRAIN_LOG_FILE = "train_log.json"


@dataclass(frozen=True)
class RunPlan:
    """What a training run will do, fixed before the first step."""

    config: TrainConfig
    store: dict[str, Any]  # path, rows, dim, space, normalized
    split: RowSplit
    d_in: int
    d_sae: int
    steps: int
    scale: float  # x_train = scale * x
    mean_squared_norm: float
    n_selected: int

    def identity(self) -> dict[str, Any]:
        """What must match for a run folder to be resumed or reused."""
        return {"config": config_to_dict(self.config),
                "store": {k: self.store[k] for k in ("rows", "dim", "space")}}


def plan_run(store: EmbeddingStore, config: TrainConfig) -> RunPlan:
    """Resolve filters, split, width, steps and input scale of a run on an open store."""
    names = tuple(config.names) + (read_names_file(config.names_file) if config.names_file else ())
    rows = select_rows(store, config.kinds, names)
    split = split_rows(store, rows, config.holdout_fraction, config.holdout_by, config.seed)
    d_in = store.dim
    d_sae = config.width(d_in)
    if config.architecture == "matryoshka":
        config.levels(d_sae)
    msn = mean_squared_norm(store, split.train)
    scale = 1.0 / math.sqrt(msn) if config.normalize else 1.0
    info = {"path": str(store.path), "rows": len(store), "dim": d_in, "space": store.space,
            "normalized": store.normalized}
    return RunPlan(config, info, split, d_in, d_sae, config.total_steps(split.train.size), scale, msn, rows.size)


def resolve_device(device: str) -> str:
    """Turn "auto" into "cuda" or "cpu"."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: CUDA is not available on this machine; use device = \"cpu\"")
    return device


def build_training_sae(config: TrainConfig, d_in: int, d_sae: int, space: str, device: str = "cpu") -> Any:
    """The SAELens TrainingSAE of the configured architecture, initialised from the config's seed."""
    import torch
    from sae_lens import (
        BatchTopKTrainingSAE,
        BatchTopKTrainingSAEConfig,
        JumpReLUTrainingSAE,
        JumpReLUTrainingSAEConfig,
        MatryoshkaBatchTopKTrainingSAE,
        MatryoshkaBatchTopKTrainingSAEConfig,
        StandardTrainingSAE,
        StandardTrainingSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )
    from sae_lens.saes.sae import SAEMetadata

    common = {"d_in": d_in, "d_sae": d_sae, "dtype": config.dtype, "device": device, "apply_b_dec_to_input": True,
                  "normalize_activations": "none",
                  "metadata": SAEMetadata(model_name=space, hook_name="embeddings", namesae_space=space)}
    topk = {"aux_loss_coefficient": config.aux_loss_coefficient, "rescale_acts_by_decoder_norm": True}
    arch = config.architecture
    if arch == "standard":
        cls, cfg = StandardTrainingSAE, StandardTrainingSAEConfig(
            **common, l1_coefficient=config.l1_coefficient, l1_warm_up_steps=config.sparsity_warmup_steps)
    elif arch == "topk":
        cls, cfg = TopKTrainingSAE, TopKTrainingSAEConfig(**common, **topk, k=int(config.k))
    elif arch == "batchtopk":
        cls, cfg = BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig(**common, **topk, k=float(config.k))
    elif arch == "matryoshka":
        cls, cfg = MatryoshkaBatchTopKTrainingSAE, MatryoshkaBatchTopKTrainingSAEConfig(
            **common, **topk, k=float(config.k), matryoshka_widths=list(config.levels(d_sae)))
    elif arch == "jumprelu":
        cls, cfg = JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig(
            **common, l0_coefficient=config.l0_coefficient, l0_warm_up_steps=config.sparsity_warmup_steps,
            jumprelu_bandwidth=config.jumprelu_bandwidth, jumprelu_init_threshold=config.jumprelu_init_threshold,
            jumprelu_sparsity_loss_mode=config.jumprelu_sparsity_loss, jumprelu_tanh_scale=config.jumprelu_tanh_scale,
            target_l0=config.jumprelu_target_l0, jumprelu_ste_to_input=config.jumprelu_ste_to_input,
            pre_act_loss_coefficient=config.pre_act_loss_coefficient)
    else:  # TrainConfig refuses these; kept for callers that bypass it
        raise ConfigError(f"unknown architecture {arch!r}")
    assert SAELENS_ARCHITECTURE[arch] == cfg.architecture()
    devices = [torch.device(device)] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        return cls(cfg)


def build_trainer(config: TrainConfig, sae: Any, steps: int, device: str) -> Any:
    """A SAELens SAETrainer holding the optimizer, schedules and feature counters of the run."""
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * config.batch_size, train_batch_size_samples=config.batch_size,
        lr=config.lr, lr_end=config.end_lr(),
        lr_scheduler_name="cosineannealing" if config.lr_schedule == "cosine" else "constant",
        lr_warm_up_steps=config.lr_warmup_steps, lr_decay_steps=config.lr_decay_steps, device=device,
        dead_feature_window=config.dead_feature_window, n_checkpoints=0, checkpoint_path=None,
        save_final_checkpoint=False, logger=LoggingConfig(log_to_wandb=False))
    return SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=iter(()))


def use_fused_adam(trainer: Any) -> None:
    """Swap the trainer's Adam for torch's fused Adam (same update, one kernel) and rebuild its schedule."""
    import torch
    from sae_lens.training.optim import get_lr_scheduler

    cfg = trainer.cfg
    try:
        trainer.optimizer = torch.optim.Adam(trainer.sae.parameters(), lr=cfg.lr,
                                             betas=(cfg.adam_beta1, cfg.adam_beta2), fused=True)
    except (RuntimeError, ValueError):  # fused Adam unsupported for this device / dtype
        return
    trainer.lr_scheduler = get_lr_scheduler(
        cfg.lr_scheduler_name, lr=cfg.lr, optimizer=trainer.optimizer, warm_up_steps=cfg.lr_warm_up_steps,
        decay_steps=cfg.lr_decay_steps, training_steps=cfg.total_training_steps, lr_end=cfg.lr_end,
        num_cycles=cfg.n_restart_cycles)


def make_step(config: TrainConfig, trainer: Any) -> Callable[[Any, bool], Any]:
    """The engine's step function: (batch in training units, want_stats) -> StepStats or None."""
    from namesae.sae.fast import FusedTopKStep, StepStats

    if config.engine == "fast" and config.architecture in TOPK_FAMILY:
        use_fused_adam(trainer)
        return FusedTopKStep(trainer)
    if config.engine == "fast" and config.architecture == "jumprelu" and config.pre_act_loss_coefficient is None:
        from namesae.sae.fast_jumprelu import FusedJumpReLUStep

        use_fused_adam(trainer)
        return FusedJumpReLUStep(trainer)
    if config.engine == "fast":
        log.debug("engine 'fast' has no fused step for architecture %r%s; using the SAELens step",
                  config.architecture, " with a pre-activation loss" if config.architecture == "jumprelu" else "")

    def saelens_step(batch: Any, want_stats: bool = False) -> StepStats | None:
        import torch

        out = trainer.step(batch)
        if not want_stats:
            return None
        with torch.no_grad():
            x = out.sae_in.double()
            err = out.sae_out.double() - x
            total = (x - x.mean(0)).pow(2).sum()
            return StepStats(loss=float(out.loss), mse=float(out.losses["mse_loss"]),
                             l0=float((out.feature_acts != 0).sum()) / x.shape[0],
                             explained_variance=float(1 - err.pow(2).sum() / total))

    return saelens_step


def heldout_batches(store: EmbeddingStore, rows: np.ndarray, batch: int = 8192) -> Iterator[tuple[Any, np.ndarray]]:
    """(x [b, d] torch float32 store units, kinds [b]) over the given rows."""
    import torch

    kinds = store.kinds
    for start in range(0, rows.size, batch):
        chunk = rows[start:start + batch]
        yield torch.from_numpy(store.read_rows(chunk)), kinds[chunk].astype(str)


def measure(model: Any, store: EmbeddingStore, plan: RunPlan) -> dict[str, Any]:
    """Metrics of an inference SAE (store units) on the held-out split (training rows if there is none)."""
    rows, split = plan.split.heldout, "heldout"
    if rows.size == 0:
        rows, split = plan.split.train, "train"
        log.warning("holdout_fraction = 0: metrics are measured on training rows")
    rows = evenly_spaced(rows, plan.config.eval_rows)
    device, dtype = model.W_dec.device, model.W_dec.dtype
    out = evaluate(lambda x: model.encode(x.to(device, dtype)).float().cpu(),
                   lambda f: model.decode(f.to(device, dtype)).float().cpu(),
                   heldout_batches(store, rows), plan.d_sae)
    return {"split": split, **out}


def _info(plan: RunPlan, step: int, samples: int, complete: bool) -> dict[str, Any]:
    cfg = plan.config
    return {
        **header(), "space": plan.store["space"], "d_in": plan.d_in, "d_sae": plan.d_sae,
        "architecture": cfg.architecture,
        "saelens_architecture": "jumprelu" if cfg.architecture in ("batchtopk", "matryoshka") else cfg.architecture,
        "codes": "store units: decoder rows have unit norm, a code is the length of its feature's contribution",
        "normalization": {"kind": "unit_mean_squared_norm" if cfg.normalize else "none", "scale": plan.scale,
                          "mean_squared_norm": plan.mean_squared_norm, "folded": True},
        "store": plan.store,
        "split": {**plan.split.summary(), "selected_rows": plan.n_selected, "kinds": list(cfg.kinds),
                  "names": len(cfg.names), "names_file": cfg.names_file},
        "config": config_to_dict(cfg), "step": step, "total_steps": plan.steps, "samples_seen": samples,
        "complete": complete,
    }


def _check_resumable(run_dir: Path, plan: RunPlan, meta: dict[str, Any]) -> None:
    """Refuse to resume a run folder made with a different store or config."""
    old = meta.get("identity", {})
    old_store, new_store = old.get("store", {}), plan.identity()["store"]
    if old_store.get("dim") != new_store["dim"] or old_store.get("space") != new_store["space"]:
        raise SpaceMismatchError(f"{run_dir}: the run was started on a store of dim {old_store.get('dim')} in space "
                                 f"{old_store.get('space')!r}, not dim {new_store['dim']} in {new_store['space']!r}; "
                                 "use another --out or --overwrite")
    if old_store.get("rows") != new_store["rows"]:
        raise StoreError(f"{run_dir}: the store had {old_store.get('rows')} rows when the run started and has "
                         f"{new_store['rows']} now; use another --out or --overwrite")
    old_cfg, new_cfg = old.get("config", {}), plan.identity()["config"]
    if old_cfg != new_cfg:
        diff = sorted(k for k in set(old_cfg) | set(new_cfg) if old_cfg.get(k) != new_cfg.get(k))
        raise ConfigError(f"{run_dir}: holds a run with a different config (field(s) {diff}: "
                          f"{[old_cfg.get(k) for k in diff]} there, {[new_cfg.get(k) for k in diff]} now); "
                          "use another --out or --overwrite")


def clear_run(run_dir: Path) -> None:
    """Delete what a training run wrote into run_dir (and nothing else)."""
    for name in (CFG_FILE, WEIGHTS_FILE, INFO_FILE, METRICS_FILE, TRAIN_LOG_FILE):
        (run_dir / name).unlink(missing_ok=True)
    for sub in ("checkpoints",):
        shutil.rmtree(run_dir / sub, ignore_errors=True)
    clear_state(run_dir)


@contextlib.contextmanager
def _opened(store: str | Path | EmbeddingStore) -> Iterator[EmbeddingStore]:
    if isinstance(store, EmbeddingStore):
        yield store
    else:
        with EmbeddingStore.open(store) as s:
            yield s


def train_sae(store: str | Path | EmbeddingStore, config: TrainConfig | None = None,
              out_dir: str | Path | None = None, progress: bool = False, overwrite: bool = False,
              stop_after_steps: int | None = None) -> TrainedSAE:
    """Train an SAE on a store and write it to out_dir (SAELens format + namesae.json + metrics.json).

    Re-running on an unfinished out_dir resumes from its last saved state; on a finished one it returns the SAE.
    Without out_dir nothing is written (no checkpoints, no resume). `stop_after_steps` stops this call after that
    many steps without saving state, as a kill would (for tests); the returned SAE is then incomplete.
    """
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}")
    run_dir = Path(out_dir) if out_dir is not None else None
    with _opened(store) as st:
        plan = plan_run(st, config)
        identity = plan.identity()
        state_folder = None
        if run_dir is not None:
            if overwrite:
                clear_run(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            done = run_dir / INFO_FILE
            if done.is_file():
                finished = load_sae(run_dir)
                _check_resumable(run_dir, plan, {"identity": finished.info.get("identity", {})})
                log.info("%s: already trained (%s steps); returning it", run_dir, finished.step)
                clear_state(run_dir)
                return finished
            state_folder = find_state(run_dir)
            if state_folder is not None:
                _check_resumable(run_dir, plan, read_state_meta(state_folder))

        device = resolve_device(config.device)
        sae = build_training_sae(config, plan.d_in, plan.d_sae, st.space, device)
        trainer = build_trainer(config, sae, plan.steps, device)
        step_fn = make_step(config, trainer)
        train_log: list[dict[str, Any]] = []
        seconds = 0.0
        if state_folder is not None:
            meta = load_state(state_folder, trainer)
            train_log, seconds = meta.get("train_log", []), meta.get("seconds", 0.0)
            log.info("%s: resuming at step %d of %d", run_dir, trainer.n_training_steps, plan.steps)

        def extra() -> dict[str, Any]:
            return {"identity": identity, "train_log": train_log, "seconds": seconds}

        def write_checkpoint(step: int) -> None:
            model = inference_model(trainer.sae, plan.scale)
            info = {**_info(plan, step, trainer.n_training_samples, complete=False), "identity": identity}
            write_saelens_folder(model, run_dir / "checkpoints" / f"step_{step:06d}", info, measure(model, st, plan))

        stream = iter(StoreStream(st, plan.split.train, config.batch_size, config.seed, config.shuffle_buffer,
                                  plan.scale, start_sample=trainer.n_training_samples))
        start_step = trainer.n_training_steps
        bar = tqdm(total=plan.steps, initial=start_step, unit="step", desc="train", disable=not progress)
        stopped = False
        try:
            while trainer.n_training_steps < plan.steps:
                if stop_after_steps is not None and trainer.n_training_steps - start_step >= stop_after_steps:
                    stopped = True
                    break
                tick = time.perf_counter()
                trainer.maybe_reset_sparsity()
                batch = next(stream).to(device)
                step = trainer.n_training_steps + 1
                want = step % config.log_every == 0 or step == plan.steps
                stats = step_fn(batch, want)
                trainer.n_training_steps = step
                seconds += time.perf_counter() - tick
                bar.update(1)
                if stats is not None:
                    lr = trainer.optimizer.param_groups[0]["lr"]
                    ev = stats.explained_variance if math.isfinite(stats.explained_variance) else None
                    train_log.append({"step": step, "samples": trainer.n_training_samples, "loss": stats.loss,
                                      "mse": stats.mse, "l0": stats.l0, "explained_variance": ev, "lr": lr,
                                      "seconds": seconds})
                    bar.set_postfix(loss=f"{stats.loss:.4g}", l0=f"{stats.l0:.1f}", ev=f"{ev:.3f}" if ev else "-")
                    if not math.isfinite(stats.loss):
                        raise NamesaeError(f"training diverged at step {step} (loss {stats.loss}); lower lr")
                if run_dir is None:
                    continue
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    write_checkpoint(step)
                if config.state_every and step % config.state_every == 0 and step < plan.steps:
                    save_state(run_dir, trainer, extra())
        finally:
            bar.close()

        model = inference_model(trainer.sae, plan.scale)
        step = trainer.n_training_steps
        info = {**_info(plan, step, trainer.n_training_samples, complete=not stopped), "identity": identity}
        if stopped:
            return TrainedSAE(model=model, space=st.space, architecture=config.architecture,
                              normalization=plan.scale, info=info, train_log=train_log,
                              training_model=trainer.sae)
        trained_steps = step - start_step
        metrics = {**measure(model, st, plan), "architecture": config.architecture, "engine": config.engine,
                   "d_in": plan.d_in, "d_sae": plan.d_sae, "step": step, "samples_seen": trainer.n_training_samples,
                   "train_seconds": seconds,
                   "train_samples_per_second": (trainer.n_training_samples / seconds) if seconds > 0 else None,
                   "resumed_at_step": start_step or None, "steps_this_call": trained_steps}
        path = None
        if run_dir is not None:
            write_json(run_dir / TRAIN_LOG_FILE, train_log)
            write_saelens_files(model, run_dir, info, metrics)
            clear_state(run_dir)
            path = run_dir
        return TrainedSAE(model=model, space=st.space, architecture=config.architecture,
                          normalization=plan.scale, path=path, info=info, metrics=metrics, train_log=train_log,
                          training_model=trainer.sae)
