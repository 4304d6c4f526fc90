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
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from namesae.config import config_to_dict
from namesae.errors import ConfigError, NamesaeError, SpaceMismatchError, StoreError
from namesae.io import atomic_write_json
from namesae.sae.config import SAELENS_ARCHITECTURE, TOPK_FAMILY, TrainConfig
from namesae.sae.data import (
    ResidentStream,
    RowSplit,
    StoreStream,
    check_training_memory,
    evenly_spaced,
    mean_squared_norm,
    prefetched,
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
    split = split_rows(store, rows, config.holdout_fraction, config.holdout_by, config.data_seed_value())
    d_in = store.dim
    d_sae = config.width(d_in)
    if config.architecture == "matryoshka":
        config.levels(d_sae)
    check_training_memory(config.batch_size, d_in, d_sae, min(config.shuffle_buffer, rows.size),
                          on_cpu=not config.device.startswith("cuda"), itemsize=8 if config.dtype == "float64" else 4)
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

    common = {"d_in": d_in, "d_sae": d_sae, "dtype": config.param_dtype(), "device": device, "apply_b_dec_to_input": True,
                  "normalize_activations": "none",
                  "metadata": SAEMetadata(model_name=space, hook_name="embeddings", namesae_space=space)}
    topk = {"aux_loss_coefficient": config.aux_loss_coefficient, "rescale_acts_by_decoder_norm": True}
    arch = config.architecture
    if arch == "standard":
        cls, cfg = StandardTrainingSAE, StandardTrainingSAEConfig(
            **common, l1_coefficient=config.l1_coefficient, l1_warm_up_steps=config.sparsity_warmup_steps)
    elif arch == "topk":
        cls, cfg = TopKTrainingSAE, TopKTrainingSAEConfig(**common, **topk, k=int(config.k_for(d_in)))
    elif arch == "batchtopk":
        cls, cfg = BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig(**common, **topk, k=float(config.k_for(d_in)))
    elif arch == "matryoshka":
        cls, cfg = MatryoshkaBatchTopKTrainingSAE, MatryoshkaBatchTopKTrainingSAEConfig(
            **common, **topk, k=float(config.k_for(d_in)), matryoshka_widths=list(config.levels(d_sae)))
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


def build_trainer(config: TrainConfig, training_sae: Any, steps: int, device: str,
                  n_train: int | None = None) -> Any:
    """A SAELens SAETrainer over `training_sae` (a SAELens TrainingSAE) holding the optimizer, schedules and
    feature counters of the run."""
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * config.batch_size, train_batch_size_samples=config.batch_size,
        lr=config.lr, lr_end=config.end_lr(),
        lr_scheduler_name="cosineannealing" if config.lr_schedule == "cosine" else "constant",
        lr_warm_up_steps=config.lr_warmup_steps, lr_decay_steps=config.lr_decay_steps, device=device,
        dead_feature_window=config.dead_window(n_train), n_checkpoints=0, checkpoint_path=None,
        save_final_checkpoint=False, logger=LoggingConfig(log_to_wandb=False), autocast=config.autocast())
    return SAETrainer(cfg=trainer_cfg, sae=training_sae, data_provider=iter(()))


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


# Below this many features SAELens's own JumpReLU step is faster on CPU than the fused one (measured at the demo's
# size, 512 features, batch 512: 8.1 vs 4.4-5.1 steps/s side by side), so "fast" uses it there.
FUSED_JUMPRELU_MIN_FEATURES = 4096


def make_step(config: TrainConfig, trainer: Any) -> Callable[[Any, bool], Any]:
    """The engine's step function: (batch in training units, want_stats) -> StepStats or None."""
    from namesae.sae.fast import FusedTopKStep, StepStats

    if config.engine == "fast" and config.architecture in TOPK_FAMILY:
        use_fused_adam(trainer)
        return FusedTopKStep(trainer, autocast=config.autocast())
    # Under torchrun only the fused step reduces gradients over ranks, so it is used at every size there.
    small = int(trainer.sae.cfg.d_sae) < FUSED_JUMPRELU_MIN_FEATURES and int(os.environ.get("WORLD_SIZE", "1")) < 2
    if config.engine == "fast" and config.architecture == "jumprelu" and config.pre_act_loss_coefficient is None \
            and not small:
        from namesae.sae.fast_jumprelu import FusedJumpReLUStep

        use_fused_adam(trainer)
        return FusedJumpReLUStep(trainer, autocast=config.autocast())
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
    Under torchrun (WORLD_SIZE > 1) the run is data-parallel: see `namesae.sae.distributed`.
    """
    config = config or TrainConfig()
    return train_saes(store, [config], [out_dir], progress, overwrite, stop_after_steps)[0]


@dataclass
class _Member:
    """One SAE of a (possibly one-member) sweep: its plan, trainer, step and progress."""

    config: TrainConfig
    plan: RunPlan
    run_dir: Path | None
    trainer: Any
    step_fn: Callable[[Any, bool], Any]
    train_log: list[dict[str, Any]]
    seconds: float
    start_step: int
    device: str

    def extra(self) -> dict[str, Any]:
        """The JSON part of a saved state beyond the trainer's own."""
        return {"identity": self.plan.identity(), "train_log": self.train_log, "seconds": self.seconds}


DATA_FIELDS = ("batch_size", "holdout_fraction", "holdout_by", "kinds", "names", "names_file", "shuffle_buffer",
               "normalize", "device")


def _check_shared_data(configs: list[TrainConfig]) -> None:
    """Refuse a sweep whose members would not see the same batches."""
    first = configs[0]
    for cfg in configs[1:]:
        diff = [f for f in DATA_FIELDS if getattr(cfg, f) != getattr(first, f)]
        if cfg.data_seed_value() != first.data_seed_value():
            diff.append("data_seed (or seed)")
        if diff:
            raise ConfigError(f"a sweep trains every SAE on the same batches, so its members must agree on "
                              f"{diff}; vary these in separate runs (set data_seed to vary seed alone)")


def _prepare(st: EmbeddingStore, config: TrainConfig, run_dir: Path | None, overwrite: bool,
             dist: Any) -> TrainedSAE | _Member:
    """A finished run folder's SAE, or a member ready to train (resumed from its state if it has one)."""
    plan = plan_run(st, config)
    state_folder = None
    if run_dir is not None:
        if overwrite and dist.is_main:
            clear_run(run_dir)
        dist.barrier()
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / INFO_FILE).is_file():
            finished = load_sae(run_dir)
            _check_resumable(run_dir, plan, {"identity": finished.info.get("identity", {})})
            log.info("%s: already trained (%s steps); returning it", run_dir, finished.step)
            if dist.is_main:
                clear_state(run_dir)
            return finished
        state_folder = find_state(run_dir)
        if state_folder is not None:
            _check_resumable(run_dir, plan, read_state_meta(state_folder))
    device = dist.device(resolve_device(config.device))
    sae = build_training_sae(config, plan.d_in, plan.d_sae, st.space, device)
    trainer = build_trainer(config, sae, plan.steps, device, int(plan.split.train.size))
    step_fn = dist.wrap_step(make_step(config, trainer), config)
    member = _Member(config, plan, run_dir, trainer, step_fn, [], 0.0, 0, device)
    if state_folder is not None:
        meta = load_state(state_folder, trainer)
        member.train_log, member.seconds = meta.get("train_log", []), meta.get("seconds", 0.0)
        log.info("%s: resuming at step %d of %d", run_dir, trainer.n_training_steps, plan.steps)
    member.start_step = trainer.n_training_steps
    return member


def _stream(st: EmbeddingStore, member: _Member, start_sample: int, dist: Any) -> Iterator[Any]:
    """The training batches from `start_sample` on (this rank's share under torchrun), on the member's device."""
    import torch

    cfg, plan = member.config, member.plan
    args = (st, plan.split.train, cfg.batch_size, cfg.data_seed_value(), cfg.shuffle_buffer, plan.scale)
    resident = cfg.data_on_device == "yes"
    if cfg.data_on_device == "auto" and member.device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(member.device))
        resident = plan.split.train.size * plan.d_in * 4 < free / 4
    if resident:
        return (dist.shard(b) for b in ResidentStream(*args, start_sample=start_sample, device=member.device))
    batches = (dist.shard(b) for b in StoreStream(*args, start_sample=start_sample))
    return prefetched(batches, cfg.prefetch, member.device)


@contextlib.contextmanager
def _matmul_precision(config: TrainConfig) -> Iterator[None]:
    """TF32 float32 matmuls on CUDA for the run when `tf32` is set; the previous setting restored after."""
    import torch

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(config.tf32)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _train_one_step(member: _Member, batch: Any, st: EmbeddingStore, dist: Any) -> None:
    """One step of one member, with its log entry, checkpoint and state save."""
    tr, cfg, plan = member.trainer, member.config, member.plan
    tick = time.perf_counter()
    tr.maybe_reset_sparsity()
    step = tr.n_training_steps + 1
    want = step % cfg.log_every == 0 or step == plan.steps
    stats = member.step_fn(batch, want)
    tr.n_training_steps = step
    member.seconds += time.perf_counter() - tick
    if stats is not None:
        lr = tr.optimizer.param_groups[0]["lr"]
        ev = stats.explained_variance if math.isfinite(stats.explained_variance) else None
        member.train_log.append({"step": step, "samples": tr.n_training_samples, "loss": stats.loss,
                                 "mse": stats.mse, "l0": stats.l0, "explained_variance": ev, "lr": lr,
                                 "seconds": member.seconds})
        if not math.isfinite(stats.loss):
            raise NamesaeError(f"training diverged at step {step} (loss {stats.loss}); lower lr")
    if member.run_dir is None or not dist.is_main:
        return
    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
        model = inference_model(tr.sae, plan.scale)
        info = {**_info(plan, step, tr.n_training_samples, complete=False), "identity": plan.identity()}
        write_saelens_folder(model, member.run_dir / "checkpoints" / f"step_{step:06d}", info,
                             measure(model, st, plan))
    if cfg.state_every and step % cfg.state_every == 0 and step < plan.steps:
        save_state(member.run_dir, tr, member.extra())


def _dead_in_training(trainer: Any, step: int) -> float | None:
    """Share of features that fired on no batch of the last dead_feature_window steps (all steps, when fewer)."""
    if step <= 0:
        return None
    window = min(int(trainer.cfg.dead_feature_window), step)
    return float((trainer.n_forward_passes_since_fired >= window).float().mean())


def _finish(member: _Member, st: EmbeddingStore, stopped: bool, dist: Any) -> TrainedSAE:
    """The member's final SAE: written (on the main rank) and measured unless the call was stopped early."""
    tr, cfg, plan = member.trainer, member.config, member.plan
    model = inference_model(tr.sae, plan.scale)
    step = tr.n_training_steps
    info = {**_info(plan, step, tr.n_training_samples, complete=not stopped), "identity": plan.identity()}
    common = {"model": model, "space": st.space, "architecture": cfg.architecture, "normalization": plan.scale,
              "info": info, "train_log": member.train_log, "training_model": tr.sae}
    if stopped or not dist.is_main:
        return TrainedSAE(**common)
    seconds = member.seconds
    metrics = {**measure(model, st, plan), "architecture": cfg.architecture, "engine": cfg.engine,
               "d_in": plan.d_in, "d_sae": plan.d_sae, "step": step, "samples_seen": tr.n_training_samples,
               "train_seconds": seconds,
               "train_samples_per_second": (tr.n_training_samples / seconds) if seconds > 0 else None,
               "resumed_at_step": member.start_step or None, "steps_this_call": step - member.start_step,
               "world_size": dist.world, "dead_fraction_training": _dead_in_training(tr, step)}
    path = None
    if member.run_dir is not None:
        atomic_write_json(member.run_dir / TRAIN_LOG_FILE, member.train_log)
        write_saelens_files(model, member.run_dir, info, metrics)
        clear_state(member.run_dir)
        path = member.run_dir
    return TrainedSAE(**common, path=path, metrics=metrics)


def train_saes(store: str | Path | EmbeddingStore, configs: list[TrainConfig],
               out_dirs: list[str | Path | None], progress: bool = False, overwrite: bool = False,
               stop_after_steps: int | None = None) -> list[TrainedSAE]:
    """Train several SAEs in one pass over the same batches (a sweep), each into its own resumable run folder.

    Every member sees exactly the batches its own `train_sae` run would (the members must agree on the data
    settings, see DATA_FIELDS), so a sweep gives each SAE the weights of a separate run with its config.
    Members resumed at different steps wait for the shared stream to reach them.
    """
    from tqdm.auto import tqdm

    from namesae.sae.distributed import Distributed

    if len(configs) != len(out_dirs) or not configs:
        raise ConfigError("train_saes needs one out_dir (or None) per config, and at least one config")
    for cfg in configs:
        if not isinstance(cfg, TrainConfig):
            raise ConfigError(f"config must be a TrainConfig, got {type(cfg).__name__}")
    _check_shared_data(configs)
    dirs = [Path(d) if d is not None else None for d in out_dirs]
    if len({d for d in dirs if d is not None}) < sum(d is not None for d in dirs):
        raise ConfigError("each SAE of a sweep needs its own out_dir")
    dist = Distributed.from_environment(configs[0])
    results: list[TrainedSAE | None] = [None] * len(configs)
    with _opened(store) as st, _matmul_precision(configs[0]):
        members: dict[int, _Member] = {}
        for i, (cfg, run_dir) in enumerate(zip(configs, dirs)):
            prepared = _prepare(st, cfg, run_dir, overwrite, dist)
            if isinstance(prepared, TrainedSAE):
                results[i] = prepared
            else:
                members[i] = prepared
        if members:
            first = next(iter(members.values()))
            batch_size = first.config.batch_size
            start = min(m.trainer.n_training_steps for m in members.values())
            end = max(m.plan.steps for m in members.values())
            stream = _stream(st, first, start * batch_size, dist)
            bar = tqdm(total=end, initial=start, unit="step", desc="train", disable=not progress or not dist.is_main)
            stopped = False
            step = start
            try:
                while step < end:
                    if stop_after_steps is not None and step - start >= stop_after_steps:
                        stopped = True
                        break
                    batch = next(stream)
                    for m in members.values():
                        if m.trainer.n_training_steps == step < m.plan.steps:
                            _train_one_step(m, batch, st, dist)
                    step += 1
                    bar.update(1)
                    if len(members) == 1 and first.train_log and first.train_log[-1]["step"] == step:
                        last = first.train_log[-1]
                        ev = last["explained_variance"]
                        bar.set_postfix(loss=f"{last['loss']:.4g}", l0=f"{last['l0']:.1f}",
                                        ev=f"{ev:.3f}" if ev is not None else "-")
            finally:
                bar.close()
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            for i, m in members.items():
                results[i] = _finish(m, st, stopped or m.trainer.n_training_steps < m.plan.steps, dist)
    dist.barrier()
    return results  # type: ignore[return-value]
