"""`TrainConfig`: every setting of SAE training (TOML section `[train]`), validated on construction."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from namesae.errors import ConfigError

ARCHITECTURES = ("standard", "topk", "batchtopk", "jumprelu", "matryoshka")
# Our architecture names -> SAELens training-registry names.
SAELENS_ARCHITECTURE = {"standard": "standard", "topk": "topk", "batchtopk": "batchtopk",
                        "jumprelu": "jumprelu", "matryoshka": "matryoshka_batchtopk"}
TOPK_FAMILY = ("topk", "batchtopk", "matryoshka")
ENGINES = ("fast", "saelens")
JUMPRELU_LOSSES = ("step", "tanh", "quadratic")
SCHEDULES = ("constant", "cosine")
HOLDOUT_BY = ("row", "name")
DTYPES = ("float32", "float64", "bfloat16")
DATA_ON_DEVICE = ("auto", "yes", "no")
KINDS = ("text", "image")
DEFAULT_STEPS = 1000


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class TrainConfig:
    """Settings of `namesae train` (TOML section `[train]`); the defaults train a TopK SAE at 8x width."""

    architecture: str = "topk"
    """SAE architecture: "standard" (ReLU + L1 penalty), "topk" (k largest per row), "batchtopk" (k per row on
    average over the batch; saved as JumpReLU), "jumprelu" (learned thresholds, L0 penalty) or "matryoshka"
    (Matryoshka BatchTopK: nested reconstruction losses; saved as JumpReLU)."""
    d_sae: int | None = None
    """Dictionary width (number of features). When unset, round(expansion_factor * d_in)."""
    expansion_factor: float = 8.0
    """Width as a multiple of the embedding dimension; used only when d_sae is unset."""
    k: float | None = None
    """Active features per row: exact for "topk" (an integer), the batch average for "batchtopk"/"matryoshka".
    Unset: min(32, d / 8) for embeddings of dimension d (at least 1): 32 for CLIP's 768- to 1,280-d spaces, 8 for
    a 64-d toy store, where k = 32 would let half the dimensions' worth of atoms write any row (the README
    walk-through's emergence scored 0.81 within +-1 at k = 32 and 0.97 at k = 8)."""
    l1_coefficient: float = 0.03
    """"standard": weight of the L1 penalty sum_j f_j * |W_dec[j]| (inputs at unit mean squared norm, see
    `normalize`). 0.03 trained at every size measured: a 32-d planted dictionary, the d = 384 world (identity F1
    1.0) and d = 1,280 x 8,192 features (0.999); 0.1, the default until 2026-12, killed 95% of features at
    d = 1,280 (F1 0.11) and 0.01 missed the 32-d dictionary. Sweep it on real data."""
    l0_coefficient: float = 0.01
    """"jumprelu": weight of the sparsity penalty (see `jumprelu_sparsity_loss`: the tanh sum by default, the
    number of active features with "step")."""
    sparsity_warmup_steps: int = 0
    """Steps over which the L1 / L0 coefficient rises linearly from 0 to its value."""
    jumprelu_bandwidth: float = 0.05
    """"jumprelu": width of the straight-through window around the threshold."""
    jumprelu_init_threshold: float = 0.01
    """"jumprelu": initial threshold of every feature."""
    jumprelu_sparsity_loss: str = "tanh"
    """"jumprelu": sparsity penalty, as SAELens's `jumprelu_sparsity_loss_mode`: "tanh" (sum tanh(scale * f *
    |W_dec|), Anthropic; the default), "step" (L0 through a straight-through step, DeepMind) or "quadratic"
    (2 / target_l0 * (L0 - target_l0)^2, Gemma Scope 2). With "step" and "quadratic" the L0 term drives every
    threshold's gradient before the dictionary has learned anything, and Adam moves each threshold by its full
    step whatever the coefficient: at d = 1,280 with 8,192 features 97-99% of features died (identity F1
    0.06-0.36; a 5x smaller coefficient did not help), where "tanh" with `jumprelu_ste_to_input` trained (see the
    README's real-size table). The demo (d = 64) sets "step", which works at that size."""
    jumprelu_tanh_scale: float = 4.0
    """"jumprelu" with "tanh" loss: the scale inside the tanh."""
    jumprelu_target_l0: float | None = None
    """"jumprelu" with "quadratic" loss: the target number of active features per row (required there)."""
    jumprelu_ste_to_input: bool = True
    """"jumprelu": the straight-through estimators also pass gradient to the pre-activations (Anthropic; the
    default), not to the thresholds alone (DeepMind: false), so a feature whose pre-activations sit just under
    its threshold can still learn to fire."""
    pre_act_loss_coefficient: float | None = None
    """"jumprelu": weight of Anthropic's pre-activation loss on dead features (unset: none). The fused step
    has no form of it; with it set, training uses the SAELens step."""
    matryoshka_widths: tuple[int, ...] = ()
    """"matryoshka": nested dictionary sizes, strictly increasing; d_sae is appended if missing. Empty:
    d_sae/8, d_sae/4, d_sae/2, d_sae."""
    aux_loss_coefficient: float = 1.0
    """TopK family: weight of the auxiliary loss that lets dead features reconstruct the residual."""
    dead_feature_window: int | None = None
    """A feature that has not fired for this many steps counts as dead (drives the auxiliary loss). Unset: two
    passes over the training rows (at least 10 steps), at most SAELens's 1,000 steps, so that on a store of
    thousands of rows the auxiliary loss revives dead features during the run instead of after it."""
    lr: float = 3e-4
    """Adam learning rate."""
    lr_schedule: str = "constant"
    """Learning-rate schedule after warm-up: "constant" or "cosine" (annealing to lr_end)."""
    lr_end: float | None = None
    """Final learning rate of the cosine schedule, and start of the linear decay; unset: lr / 10."""
    lr_warmup_steps: int = 0
    """Steps of linear learning-rate warm-up from lr / lr_warmup_steps to lr."""
    lr_decay_steps: int = 0
    """Final steps of linear learning-rate decay to 0."""
    batch_size: int = 4096
    """Rows per training step."""
    steps: int | None = None
    """Training steps. Give at most one of steps, total_samples, epochs; none: 1000 steps."""
    total_samples: int | None = None
    """Training rows to consume (rounded up to whole steps)."""
    epochs: float | None = None
    """Passes over the training split (rounded up to whole steps)."""
    seed: int = 0
    """Seed of the initialisation, and of the held-out split and data order unless data_seed is set."""
    data_seed: int | None = None
    """Seed of the held-out split and the data order; unset: seed. Set it to vary `seed` (the initialisation)
    alone, e.g. across the members of a sweep, which must all see the same batches."""
    normalize: bool = True
    """Scale inputs to unit mean squared norm while training; the scale is folded into the saved weights, so
    the checkpoint reads and writes store units."""
    holdout_fraction: float = 0.05
    """Share of rows (or names, see holdout_by) held out from training; all metrics are computed on them."""
    holdout_by: str = "row"
    """Held-out split unit: "row" (each row independently) or "name" (all rows of a name together, so metrics
    measure generalisation to unseen names). Deterministic from the seed, and a row's (name's) side does not
    change when the store grows."""
    eval_rows: int | None = 100_000
    """At most this many held-out rows (an evenly spaced subset) for metrics; unset: all of them."""
    kinds: tuple[str, ...] = ()
    """Train on rows of these kinds only ("text", "image"); empty: all rows."""
    names: tuple[str, ...] = ()
    """Train on rows of these names only; empty: all names."""
    names_file: str | None = None
    """A text file of names, one per line, added to `names`."""
    checkpoint_every: int = 0
    """Write an intermediate SAE to checkpoints/step_XXXXXX/ every this many steps (0: none)."""
    state_every: int = 1000
    """Save resumable training state every this many steps (0: never; a killed run then starts over)."""
    log_every: int = 50
    """Steps between progress updates (loss, L0, explained variance of the batch)."""
    device: str = "cpu"
    """Torch device: "cpu", "cuda", "cuda:1", ... or "auto" (cuda when available)."""
    dtype: str = "float32"
    """Compute dtype: "float32", "float64" (parameters in that dtype) or "bfloat16" (mixed precision: parameters
    and Adam state stay float32, the dense matmuls run under torch.autocast in bfloat16)."""
    tf32: bool = False
    """float32 matmuls on CUDA use TensorFloat-32 tensor cores (about 10 mantissa bits); needs dtype float32;
    no effect on CPU."""
    data_on_device: str = "auto"
    """Where the training rows live: "yes" (all copied to the device once, batches gathered there: no host
    traffic per step), "no" (streamed from the store; on CUDA through pinned memory, prefetched on a background
    thread), "auto" ("yes" on CUDA when the rows take under a quarter of the free device memory, else "no").
    The batches are the same either way."""
    prefetch: int = 2
    """Batches read ahead by a background thread while the device trains (0: read in the training loop)."""
    shuffle_buffer: int = 65536
    """Rows held in memory for shuffling: whole HDF5 chunks are read and shuffled together, so memory stays
    bounded (shuffle_buffer * d * 4 bytes) whatever the store size."""
    engine: str = "fast"
    """Training step: "fast" (fused sparse step for the TopK family and JumpReLU, same maths and state as SAELens) or
    "saelens" (SAELens's SAETrainer step, the reference). Both write the same SAELens format."""

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture: unknown architecture {self.architecture!r}; "
                              f"use one of {list(ARCHITECTURES)}")
        if self.d_sae is not None and not _positive_int(self.d_sae):
            raise ConfigError(f"d_sae must be a positive integer, got {self.d_sae!r}")
        if not _number(self.expansion_factor) or self.expansion_factor <= 0:
            raise ConfigError(f"expansion_factor must be a number > 0, got {self.expansion_factor!r}")
        if self.k is not None and (not _number(self.k) or self.k <= 0):
            raise ConfigError(f"k must be a number > 0, got {self.k!r}")
        if self.k is not None and self.architecture == "topk" and float(self.k) != int(self.k):
            raise ConfigError(f"k must be a whole number for architecture 'topk', got {self.k!r}")
        for name in ("l1_coefficient", "l0_coefficient", "aux_loss_coefficient"):
            value = getattr(self, name)
            if not _number(value) or value < 0:
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("jumprelu_bandwidth", "lr"):
            value = getattr(self, name)
            if not _number(value) or value <= 0:
                raise ConfigError(f"{name} must be a number > 0, got {value!r}")
        if self.jumprelu_sparsity_loss not in JUMPRELU_LOSSES:
            raise ConfigError(f"jumprelu_sparsity_loss must be one of {list(JUMPRELU_LOSSES)}, "
                              f"got {self.jumprelu_sparsity_loss!r}")
        if not _number(self.jumprelu_tanh_scale) or self.jumprelu_tanh_scale <= 0:
            raise ConfigError(f"jumprelu_tanh_scale must be a number > 0, got {self.jumprelu_tanh_scale!r}")
        if self.jumprelu_target_l0 is not None and (not _number(self.jumprelu_target_l0)
                                                    or self.jumprelu_target_l0 <= 0):
            raise ConfigError(f"jumprelu_target_l0 must be a number > 0, got {self.jumprelu_target_l0!r}")
        if self.jumprelu_sparsity_loss == "quadratic" and self.jumprelu_target_l0 is None:
            raise ConfigError("jumprelu_sparsity_loss = \"quadratic\" needs jumprelu_target_l0")
        if not isinstance(self.jumprelu_ste_to_input, bool):
            raise ConfigError(f"jumprelu_ste_to_input must be true or false, got {self.jumprelu_ste_to_input!r}")
        if self.pre_act_loss_coefficient is not None and (not _number(self.pre_act_loss_coefficient)
                                                          or self.pre_act_loss_coefficient < 0):
            raise ConfigError(f"pre_act_loss_coefficient must be a number >= 0, got "
                              f"{self.pre_act_loss_coefficient!r}")
        if not _number(self.jumprelu_init_threshold) or self.jumprelu_init_threshold < 0:
            raise ConfigError(f"jumprelu_init_threshold must be >= 0, got {self.jumprelu_init_threshold!r}")
        widths = self.matryoshka_widths
        if any(not _positive_int(w) for w in widths) or any(a >= b for a, b in itertools.pairwise(widths)):
            raise ConfigError(f"matryoshka_widths must be strictly increasing positive integers, got {widths!r}")
        for name in ("sparsity_warmup_steps", "lr_warmup_steps", "lr_decay_steps", "checkpoint_every",
                     "state_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        if self.dead_feature_window is not None and not _positive_int(self.dead_feature_window):
            raise ConfigError(f"dead_feature_window must be a positive integer, got {self.dead_feature_window!r}")
        for name in ("batch_size", "log_every", "shuffle_buffer"):
            if not _positive_int(getattr(self, name)):
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.lr_schedule not in SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {list(SCHEDULES)}, got {self.lr_schedule!r}")
        if self.lr_end is not None and (not _number(self.lr_end) or self.lr_end < 0):
            raise ConfigError(f"lr_end must be a number >= 0, got {self.lr_end!r}")
        if self.lr_decay_steps and self.lr_end is not None and self.lr_end == 0:
            raise ConfigError("lr_decay_steps needs lr_end > 0 (the decay starts from lr_end)")
        given = [n for n in ("steps", "total_samples", "epochs") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ConfigError(f"give at most one of steps, total_samples, epochs; got {given}")
        for name in ("steps", "total_samples"):
            value = getattr(self, name)
            if value is not None and not _positive_int(value):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.epochs is not None and (not _number(self.epochs) or self.epochs <= 0):
            raise ConfigError(f"epochs must be a number > 0, got {self.epochs!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.data_seed is not None and (not isinstance(self.data_seed, int) or isinstance(self.data_seed, bool)
                                           or self.data_seed < 0):
            raise ConfigError(f"data_seed must be an integer >= 0, got {self.data_seed!r}")
        if not isinstance(self.normalize, bool):
            raise ConfigError(f"normalize must be true or false, got {self.normalize!r}")
        if not _number(self.holdout_fraction) or not 0 <= self.holdout_fraction < 1:
            raise ConfigError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction!r}")
        if self.holdout_by not in HOLDOUT_BY:
            raise ConfigError(f"holdout_by must be one of {list(HOLDOUT_BY)}, got {self.holdout_by!r}")
        if self.eval_rows is not None and not _positive_int(self.eval_rows):
            raise ConfigError(f"eval_rows must be a positive integer, got {self.eval_rows!r}")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ConfigError(f"kinds: unknown kind(s) {bad}; use {list(KINDS)}")
        if any(not isinstance(n, str) or not n for n in self.names):
            raise ConfigError("names must be non-empty strings")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if not isinstance(self.tf32, bool):
            raise ConfigError(f"tf32 must be true or false, got {self.tf32!r}")
        if self.tf32 and self.dtype != "float32":
            raise ConfigError(f"tf32 = true needs dtype = \"float32\" (got {self.dtype!r}): TF32 is a float32 matmul mode")
        if self.data_on_device not in DATA_ON_DEVICE:
            raise ConfigError(f"data_on_device must be one of {list(DATA_ON_DEVICE)}, got {self.data_on_device!r}")
        if not isinstance(self.prefetch, int) or isinstance(self.prefetch, bool) or self.prefetch < 0:
            raise ConfigError(f"prefetch must be an integer >= 0, got {self.prefetch!r}")
        if not isinstance(self.device, str) or not (self.device in ("cpu", "auto", "mps")
                                                    or self.device.startswith("cuda")):
            raise ConfigError(f"device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto', got {self.device!r}")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {list(ENGINES)}, got {self.engine!r}")

    # ---- values that depend on the data -------------------------------------------------------------------
    def k_for(self, d_in: int) -> float:
        """Active features per row for embeddings of dimension d_in (the set k, else min(32, d_in / 8))."""
        return self.k if self.k is not None else max(1, min(32, d_in // 8))

    def width(self, d_in: int) -> int:
        """The dictionary width for embeddings of dimension d_in."""
        d_sae = self.d_sae if self.d_sae is not None else max(1, round(self.expansion_factor * d_in))
        k = self.k_for(d_in)
        if self.architecture == "topk" and int(k) > d_sae:
            raise ConfigError(f"k = {k} exceeds the dictionary width d_sae = {d_sae}")
        if self.architecture in ("batchtopk", "matryoshka") and k > d_sae:
            raise ConfigError(f"k = {k} exceeds the dictionary width d_sae = {d_sae}")
        return d_sae

    def levels(self, d_sae: int) -> tuple[int, ...]:
        """Matryoshka nested widths ending at d_sae."""
        widths = list(self.matryoshka_widths) or [w for w in (d_sae // 8, d_sae // 4, d_sae // 2) if w > 0]
        if widths and widths[-1] == d_sae:
            widths = widths[:-1]
        if any(w >= d_sae for w in widths):
            raise ConfigError(f"matryoshka_widths {list(self.matryoshka_widths)} must stay below d_sae = {d_sae}")
        return (*sorted(set(widths)), d_sae)

    def dead_window(self, n_train: int | None) -> int:
        """Steps without firing after which a feature counts as dead, for n_train training rows (unknown: 1,000)."""
        if self.dead_feature_window is not None:
            return self.dead_feature_window
        if n_train is None:
            return 1000
        return int(min(1000, max(10, math.ceil(2 * n_train / self.batch_size))))

    def total_steps(self, n_train: int) -> int:
        """Training steps implied by steps / total_samples / epochs for a training split of n_train rows."""
        if self.steps is not None:
            return self.steps
        if self.total_samples is not None:
            return math.ceil(self.total_samples / self.batch_size)
        if self.epochs is not None:
            return max(1, math.ceil(self.epochs * n_train / self.batch_size))
        return DEFAULT_STEPS

    def data_seed_value(self) -> int:
        """The seed of the split and the data order."""
        return self.seed if self.data_seed is None else self.data_seed

    def param_dtype(self) -> str:
        """The dtype of parameters and optimizer state ("bfloat16" trains float32 parameters under autocast)."""
        return "float32" if self.dtype == "bfloat16" else self.dtype

    def autocast(self) -> bool:
        """Whether the dense matmuls run under torch.autocast(bfloat16)."""
        return self.dtype == "bfloat16"

    def end_lr(self) -> float:
        """The schedule's final learning rate."""
        return self.lr_end if self.lr_end is not None else self.lr / 10
