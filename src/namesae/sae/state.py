"""Resumable training state: tensors in safetensors, scalars in JSON, swapped in atomically (never pickle).

`DIR/state/` holds `tensors.safetensors` (training-unit SAE weights, Adam moments, feature counters, torch RNG)
and `state.json` (step, samples seen = the data stream's position, optimizer hyper-parameters, learning-rate and
coefficient scheduler states, progress log, the run's identity). A new state is written to a temporary folder and
renamed into place, so a kill at any moment leaves either the previous state or the new one. `state.json`
(version 2) records the sha256 of the tensors file and of its own other fields; a state that fails either check,
or lacks a field, is refused with one line that says to delete it (the run then starts over).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from namesae.errors import NamesaeError
from namesae.io import atomic_dir, check_sealed, sealed, sha256_file

log = logging.getLogger(__name__)

STATE_DIR = "state"
STATE_VERSION = 2  # 2: sealed state.json with the tensors' sha256
TENSORS_FILE = "tensors.safetensors"
REQUIRED_KEYS = {"n_training_steps": int, "n_training_samples": int, "n_frac_active_samples": int,
                 "started_fine_tuning": bool, "optimizer_param_groups": list, "optimizer_state_keys": dict,
                 "lr_scheduler": dict, "coefficient_schedulers": dict}


def _jsonable(value: Any) -> Any:
    """Scheduler / optimizer state as JSON values (tuples -> lists, 0-d tensors -> numbers)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError("a tensor in a JSON state")
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in the training state")


def save_state(run_dir: Path, trainer: Any, extra: dict[str, Any]) -> None:
    """Save the trainer's full state (SAELens SAETrainer attributes) plus `extra` JSON under run_dir/state/."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for name, value in trainer.sae.state_dict().items():
        tensors[f"sae.{name}"] = value
    opt = trainer.optimizer.state_dict()
    for pid, pstate in opt["state"].items():
        for key, value in pstate.items():
            tensors[f"optimizer.{pid}.{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    tensors["trainer.act_freq_scores"] = trainer.act_freq_scores
    tensors["trainer.n_forward_passes_since_fired"] = trainer.n_forward_passes_since_fired
    tensors["rng.torch"] = torch.get_rng_state()
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {
        "state_version": STATE_VERSION,
        "n_training_steps": trainer.n_training_steps,
        "n_training_samples": trainer.n_training_samples,
        "n_frac_active_samples": trainer.n_frac_active_samples,
        "started_fine_tuning": trainer.started_fine_tuning,
        "optimizer_param_groups": _jsonable(opt["param_groups"]),
        "optimizer_state_keys": {str(pid): sorted(p) for pid, p in opt["state"].items()},
        "lr_scheduler": _jsonable(trainer.lr_scheduler.state_dict()),
        "coefficient_schedulers": {k: _jsonable(s.state_dict()) for k, s in trainer.coefficient_schedulers.items()},
        **extra,
    }
    with atomic_dir(Path(run_dir) / STATE_DIR) as tmp:  # a kill between renames leaves .state.old-PID
        save_file(tensors, str(tmp / TENSORS_FILE))
        meta["tensors_sha256"] = sha256_file(tmp / TENSORS_FILE)
        (tmp / "state.json").write_text(json.dumps(sealed(meta)), encoding="utf-8")


def find_state(run_dir: Path) -> Path | None:
    """The state folder to resume from: state/, or the previous one if a kill fell between two renames."""
    run_dir = Path(run_dir)
    if (run_dir / STATE_DIR / "state.json").is_file():
        return run_dir / STATE_DIR
    olds = sorted(p for p in run_dir.glob(".state.old-*") if (p / "state.json").is_file())
    return olds[-1] if olds else None


def _fix(folder: Path) -> str:
    return f"delete {folder} to start the run over (or run with --overwrite)"


def read_state_meta(folder: Path) -> dict[str, Any]:
    """The JSON half of a saved state, checked: its version, its own checksum and every field resume reads."""
    path = folder / "state.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NamesaeError(f"{path}: unreadable training state ({err}); {_fix(folder)}") from None
    if not isinstance(meta, dict):
        raise NamesaeError(f"{path}: training state must be a JSON object, got {type(meta).__name__}; "
                           f"{_fix(folder)}")
    version = meta.get("state_version")
    if version not in (1, STATE_VERSION) or isinstance(version, bool):
        raise NamesaeError(f"{path}: field 'state_version' is {version!r}, not {STATE_VERSION}; {_fix(folder)}")
    if version >= 2:
        check_sealed(meta, path, _fix(folder))
    for key, kind in REQUIRED_KEYS.items():
        value = meta.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise NamesaeError(f"{path}: field {key!r} is missing or not {kind.__name__} ({value!r:.60}); "
                               f"{_fix(folder)}")
    if not isinstance(meta.get("train_log", []), list) or not isinstance(meta.get("seconds", 0.0), (int, float)):
        raise NamesaeError(f"{path}: field 'train_log' or 'seconds' has the wrong type; {_fix(folder)}")
    return meta


def load_state(folder: Path, trainer: Any) -> dict[str, Any]:
    """Restore a trainer from a saved state; returns the JSON part (with `extra`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_state_meta(folder)
    file = folder / TENSORS_FILE
    if not file.is_file():
        raise NamesaeError(f"{file}: missing from the training state; {_fix(folder)}")
    if meta["state_version"] >= 2 and sha256_file(file) != meta.get("tensors_sha256"):
        raise NamesaeError(f"{file}: sha256 differs from the one state.json recorded (the state is damaged); "
                           f"{_fix(folder)}")
    try:
        tensors = load_file(str(file))
        _restore(trainer, meta, tensors)
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError) as err:
        raise NamesaeError(f"{folder}: the training state does not fit this run ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else ''}); {_fix(folder)}") from None
    return meta


def _restore(trainer: Any, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    device = trainer.sae.W_dec.device
    sae_state = {k[4:]: v for k, v in tensors.items() if k.startswith("sae.")}
    trainer.sae.load_state_dict(sae_state)
    if "topk_threshold" in sae_state:  # a buffer SAELens reassigns; keep its saved dtype
        trainer.sae.topk_threshold = sae_state["topk_threshold"].to(device)
    opt_state = {int(pid): {key: tensors[f"optimizer.{pid}.{key}"].to(device) if key != "step"
                            else tensors[f"optimizer.{pid}.{key}"]
                            for key in keys}
                 for pid, keys in meta["optimizer_state_keys"].items()}
    groups = meta["optimizer_param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    trainer.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    trainer.lr_scheduler.load_state_dict(meta["lr_scheduler"])
    for name, sched_state in meta["coefficient_schedulers"].items():
        trainer.coefficient_schedulers[name].load_state_dict(sched_state)
    trainer.act_freq_scores = tensors["trainer.act_freq_scores"].to(device)
    trainer.n_forward_passes_since_fired = tensors["trainer.n_forward_passes_since_fired"].to(device)
    trainer.n_training_steps = meta["n_training_steps"]
    trainer.n_training_samples = meta["n_training_samples"]
    trainer.n_frac_active_samples = meta["n_frac_active_samples"]
    trainer.started_fine_tuning = meta["started_fine_tuning"]
    torch.set_rng_state(tensors["rng.torch"])


def clear_state(run_dir: Path) -> None:
    """Remove the resumable state once the run is finished."""
    run_dir = Path(run_dir)
    shutil.rmtree(run_dir / STATE_DIR, ignore_errors=True)
    for old in [*run_dir.glob(".state.old-*"), *run_dir.glob(".state.tmp-*")]:  # tmp: a save a kill cut short
        shutil.rmtree(old, ignore_errors=True)
