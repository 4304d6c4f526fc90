"""A trained SAE as the rest of namesae sees it: SAELens weights in store units plus our `namesae.json`.

On disk (one folder): `cfg.json` + `sae_weights.safetensors` (SAELens format: `sae_lens.SAE.load_from_disk`
opens it), `namesae.json` (store space, normalisation, split, config, step) and, for finished runs, `metrics.json`.
Saved weights read and write *store units*: the training-time input scale is folded into the weights, and decoder
rows are unit norm, so a code f_j is the length of feature j's contribution to the reconstruction.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from namesae import __version__
from namesae.errors import NamesaeError, SpaceMismatchError
from namesae.store import EmbeddingStore

log = logging.getLogger(__name__)

SAE_FORMAT = "namesae-sae"
SAE_FORMAT_VERSION = 1
INFO_FILE = "namesae.json"
METRICS_FILE = "metrics.json"
CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"


@dataclass
class TrainedSAE:
    """An SAE over one embedding space: encode / decode in store units, and where it came from."""

    model: Any
    """The SAELens inference SAE (`sae_lens.SAE` subclass) holding the store-unit weights."""
    space: str | None
    """The embedding space of the store it was trained on (None for foreign SAELens folders)."""
    architecture: str
    """Training architecture ("standard", "topk", "batchtopk", "jumprelu", "matryoshka")."""
    normalization: float | None = None
    """Input scale used while training (x_train = scale * x), already folded into the weights; None: none."""
    path: Path | None = None
    """Folder it was loaded from or written to."""
    info: dict[str, Any] = field(default_factory=dict)
    """Contents of namesae.json."""
    metrics: dict[str, Any] | None = None
    """Contents of metrics.json (held-out metrics), when present."""
    train_log: list[dict[str, Any]] = field(default_factory=list)
    """Progress records (step, loss, mse, l0, explained_variance) written during training."""
    training_model: Any = None
    """The live SAELens TrainingSAE in training units (only on the object `train_sae` returns)."""

    @property
    def d_in(self) -> int:
        """Embedding dimension."""
        return int(self.model.cfg.d_in)

    @property
    def d_sae(self) -> int:
        """Number of features."""
        return int(self.model.cfg.d_sae)

    @property
    def step(self) -> int | None:
        """Training step of this SAE (None when unknown)."""
        return self.info.get("step")

    @property
    def complete(self) -> bool:
        """Whether training ran to its last step."""
        return bool(self.info.get("complete", False))

    @property
    def config(self) -> Any:
        """The TrainConfig it was trained with (None for foreign SAELens folders)."""
        from namesae.config import config_from_dict
        from namesae.sae.config import TrainConfig

        data = self.info.get("config")
        return None if data is None else config_from_dict(TrainConfig, data, f"{self.path}/{INFO_FILE}")

    def decoder_directions(self) -> Any:
        """Decoder rows in store units (torch float32 [d_sae, d_in]); unit norm for SAEs namesae wrote."""
        return self.model.W_dec.detach().float().cpu().clone()

    def encode(self, x: Any) -> Any:
        """Codes of store-unit rows x ([n, d_in] numpy or torch) as torch float32 [n, d_sae], all >= 0."""
        return encode(self, x)

    def decode(self, codes: Any) -> Any:
        """Store-unit reconstructions (torch float32 [n, d_in]) of codes [n, d_sae]."""
        return decode(self, codes)


def _as_tensor(x: Any, width: int, what: str, sae: TrainedSAE) -> Any:
    import torch

    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[1] != width:
        raise SpaceMismatchError(f"{what} of shape {tuple(t.shape)} does not fit the SAE at {sae.path} "
                                 f"(expects [n, {width}]; SAE space {sae.space!r})")
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t).all(dim=1)).nonzero()[0, 0])
        raise NamesaeError(f"{what}: row {bad} holds NaN/Inf")
    return t


def encode(sae: TrainedSAE, x: Any) -> Any:
    """Codes of store-unit rows x ([n, d_in] numpy or torch) as torch float32 [n, d_sae], all >= 0."""
    import torch

    t = _as_tensor(x, sae.d_in, "input", sae)
    with torch.no_grad():
        return sae.model.encode(t.to(sae.model.device, sae.model.dtype)).float().cpu()


def decode(sae: TrainedSAE, codes: Any) -> Any:
    """Store-unit reconstructions (torch float32 [n, d_in]) of codes [n, d_sae]."""
    import torch

    t = _as_tensor(codes, sae.d_sae, "codes", sae)
    with torch.no_grad():
        return sae.model.decode(t.to(sae.model.device, sae.model.dtype)).float().cpu()


def check_space(sae: TrainedSAE, store: EmbeddingStore) -> None:
    """Refuse a store whose dimension or space differs from the SAE's (SpaceMismatchError naming both)."""
    if int(sae.d_in) != store.dim:
        raise SpaceMismatchError(f"{store.path}: store dim {store.dim} differs from the SAE's d_in {sae.d_in} "
                                 f"(SAE {sae.path}, space {sae.space!r}); use the store the SAE was trained on")
    if sae.space and sae.space != store.space:
        raise SpaceMismatchError(f"{store.path}: store space {store.space!r} differs from the SAE's space "
                                 f"{sae.space!r} (SAE {sae.path}); use a store embedded with the SAE's encoder")


@dataclass
class CodeBlock:
    """Codes of a run of rows: `rows[i]` is the store row of `codes[i]`; `start` is the offset in the request."""

    start: int
    rows: np.ndarray  # [b] store rows
    codes: Any  # torch float32 [b, d_sae]


def encode_store(sae: TrainedSAE, store: EmbeddingStore, rows: np.ndarray | None = None,
                 batch_size: int = 4096) -> Iterator[CodeBlock]:
    """Encode a store's rows (all, or the given ones in their order) batch by batch."""
    check_space(sae, store)
    rows = np.arange(len(store), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    for start in range(0, rows.size, batch_size):
        chunk = rows[start:start + batch_size]
        contiguous = chunk[-1] - chunk[0] + 1 == chunk.size and bool(np.all(np.diff(chunk) == 1))
        x = store.read(int(chunk[0]), int(chunk[-1]) + 1) if contiguous else store.read_rows(chunk)
        yield CodeBlock(start, chunk, encode(sae, x))


# ---- disk ----------------------------------------------------------------------------------------------------
def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file atomically (temp file in the same folder, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically."""
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def git_commit() -> str | None:
    """The git commit of the namesae source tree, when it is a checkout."""
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             check=False, text=True, timeout=5)
        return (out.stdout.strip() or None) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def header() -> dict[str, Any]:
    """Schema and library versions that open every namesae.json."""
    import sae_lens
    import torch

    return {"format": SAE_FORMAT, "format_version": SAE_FORMAT_VERSION, "namesae_version": __version__,
            "sae_lens_version": sae_lens.__version__, "torch_version": torch.__version__,
            "git_commit": git_commit()}


def write_saelens_folder(inference_sae: Any, folder: Path, info: dict[str, Any],
                         metrics: dict[str, Any] | None = None) -> None:
    """Write an inference SAE in SAELens format plus namesae.json (and metrics.json) into `folder`, atomically.

    The files go to a temporary sibling folder first; an existing folder is replaced only once all are written.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = {k: v.detach().contiguous().cpu() for k, v in inference_sae.state_dict().items()}
    save_file(state, str(tmp / WEIGHTS_FILE))
    (tmp / CFG_FILE).write_text(json.dumps(inference_sae.cfg.to_dict()), encoding="utf-8")
    if metrics is not None:
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    (tmp / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)


def write_saelens_files(inference_sae: Any, folder: Path, info: dict[str, Any],
                        metrics: dict[str, Any] | None = None) -> None:
    """Write the SAE files into an existing folder that holds other things too, each file atomically.

    namesae.json goes last: its `complete` flag is what marks a finished run.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in inference_sae.state_dict().items()}
    tmp = folder / f".{WEIGHTS_FILE}.tmp-{os.getpid()}"
    save_file(state, str(tmp))
    os.replace(tmp, folder / WEIGHTS_FILE)
    atomic_write_text(folder / CFG_FILE, json.dumps(inference_sae.cfg.to_dict()))
    if metrics is not None:
        write_json(folder / METRICS_FILE, metrics)
    write_json(folder / INFO_FILE, info)


def load_sae(path: str | Path, device: str = "cpu") -> TrainedSAE:
    """Open an SAE folder written by namesae (or any SAELens folder: cfg.json + sae_weights.safetensors)."""
    from sae_lens import SAE

    path = Path(path)
    if not path.is_dir():
        raise NamesaeError(f"{path}: SAE folder not found")
    missing = [f for f in (CFG_FILE, WEIGHTS_FILE) if not (path / f).is_file()]
    if missing:
        hint = (" (training has not finished: run the same `namesae train` command again to resume)"
                if (path / "state").is_dir() else "")
        raise NamesaeError(f"{path}: not an SAE folder: missing {missing}{hint}")
    info: dict[str, Any] = {}
    if (path / INFO_FILE).is_file():
        try:
            info = json.loads((path / INFO_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise NamesaeError(f"{path / INFO_FILE}: invalid JSON ({err})") from None
        if info.get("format") != SAE_FORMAT or int(info.get("format_version", 0)) > SAE_FORMAT_VERSION:
            raise NamesaeError(f"{path / INFO_FILE}: not a namesae SAE file of a version this namesae reads "
                               f"(format {info.get('format')!r}, version {info.get('format_version')!r})")
    else:
        log.warning("%s: no %s; loading as a plain SAELens SAE (space unknown, no normalisation)", path, INFO_FILE)
    try:
        model = SAE.load_from_disk(str(path), device=device)
    except (ValueError, KeyError, RuntimeError, OSError, json.JSONDecodeError) as err:
        raise NamesaeError(f"{path}: cannot load the SAELens checkpoint ({type(err).__name__}: {err})") from None
    model.eval()
    metrics = None
    if (path / METRICS_FILE).is_file():
        metrics = json.loads((path / METRICS_FILE).read_text(encoding="utf-8"))
    train_log = []
    if (path / "train_log.json").is_file():
        train_log = json.loads((path / "train_log.json").read_text(encoding="utf-8"))
    norm = info.get("normalization") or {}
    return TrainedSAE(model=model, space=info.get("space"),
                      architecture=info.get("architecture", model.cfg.architecture()),
                      normalization=norm.get("scale"), path=path, info=info, metrics=metrics, train_log=train_log)


def inference_model(training_sae: Any, scale: float) -> Any:
    """The store-unit SAELens inference SAE of a training SAE (input scale and decoder norms folded in)."""
    import copy
    import tempfile

    from sae_lens import SAE

    folded = copy.deepcopy(training_sae)
    if scale != 1.0:
        folded.fold_activation_norm_scaling_factor(scale)
    folded.fold_W_dec_norm()
    with tempfile.TemporaryDirectory() as tmp:
        folded.save_inference_model(tmp)
        model = SAE.load_from_disk(tmp, device=str(training_sae.W_dec.device))
    model.eval()
    return model


def build_sae_from_weights(W_enc: Any, b_enc: Any, W_dec: Any, b_dec: Any, space: str | None = None,
                           architecture: str = "standard", k: int | None = None, threshold: Any = None,
                           out_dir: str | Path | None = None) -> TrainedSAE:
    """An SAE from given weights (W_enc [d_in, d_sae], W_dec [d_sae, d_in]): "standard", "topk" (needs k)
    or "jumprelu" (needs threshold [d_sae]); written in SAELens format to out_dir when given."""
    import torch
    from sae_lens import (
        JumpReLUSAE,
        JumpReLUSAEConfig,
        StandardSAE,
        StandardSAEConfig,
        TopKSAE,
        TopKSAEConfig,
    )

    def t(v: Any) -> Any:
        return torch.as_tensor(np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v),
                               dtype=torch.float32)

    W_enc, b_enc, W_dec, b_dec = t(W_enc), t(b_enc), t(W_dec), t(b_dec)
    d_in, d_sae = W_enc.shape
    if W_dec.shape != (d_sae, d_in) or b_enc.shape != (d_sae,) or b_dec.shape != (d_in,):
        raise NamesaeError(f"weights do not fit together: W_enc {tuple(W_enc.shape)}, b_enc {tuple(b_enc.shape)}, "
                           f"W_dec {tuple(W_dec.shape)}, b_dec {tuple(b_dec.shape)}")
    state = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    if architecture == "standard":
        model = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    elif architecture == "topk":
        if k is None:
            raise NamesaeError("architecture 'topk' needs k")
        model = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=int(k), rescale_acts_by_decoder_norm=False))
    elif architecture == "jumprelu":
        if threshold is None:
            raise NamesaeError("architecture 'jumprelu' needs threshold")
        model = JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae))
        state["threshold"] = t(threshold)
    else:
        raise NamesaeError(f"build_sae_from_weights: unknown architecture {architecture!r}; "
                           "use 'standard', 'topk' or 'jumprelu'")
    model.load_state_dict(state)
    model.eval()
    info = {**header(), "space": space, "d_in": d_in, "d_sae": d_sae, "architecture": architecture,
            "saelens_architecture": model.cfg.architecture(), "normalization": None, "complete": True,
            "source": "build_sae_from_weights"}
    sae = TrainedSAE(model=model, space=space, architecture=architecture, info=info)
    if out_dir is not None:
        write_saelens_folder(model, Path(out_dir), info)
        sae.path = Path(out_dir)
    return sae
