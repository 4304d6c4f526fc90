"""A trained SAE as the rest of namesae sees it: SAELens weights in store units plus our `namesae.json`.

On disk (one folder): `cfg.json` + `sae_weights.safetensors` (SAELens format: `sae_lens.SAE.load_from_disk`
opens it), `namesae.json` (store space, normalisation, split, config, step) and, for finished runs, `metrics.json`.
Saved weights read and write *store units*: the training-time input scale is folded into the weights, and decoder
rows are unit norm, so a code f_j is the length of feature j's contribution to the reconstruction.

`namesae.json` (format version 2) records the sha256 of every file beside it (`checksums`) and of its own other
fields (`checksum`); `load_sae` verifies them (`verify=True`, the default), so a flipped byte anywhere in the folder
is refused instead of giving different numbers. A folder without `namesae.json` (a plain SAELens SAE) still loads,
with a warning: its weights cannot be verified, and its space is read from SAELens's `cfg.json` metadata when
namesae wrote it; when no space is known, `check_space` (`namesae.sae.codes`) checks the dimension only and warns
that it did.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from namesae import __version__
from namesae.errors import NamesaeError, SpaceMismatchError
from namesae.io import (
    atomic_dir,
    atomic_file,
    atomic_write_json,
    atomic_write_text,
    check_sealed,
    sealed,
    sha256_file,
)
from namesae.sae.metrics import save_metrics

log = logging.getLogger(__name__)

SAE_FORMAT = "namesae-sae"
SAE_FORMAT_VERSION = 2  # 2: namesae.json carries sha256 checksums of the folder's files and of itself
CHECKSUMMED_FORMAT_VERSION = 2
INFO_FILE = "namesae.json"
METRICS_FILE = "metrics.json"
CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
TRAIN_LOG_FILE = "train_log.json"
NORMALIZATIONS = ("none", "unit_mean_squared_norm")


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
    """Contents of metrics.json (held-out metrics) without its format_version, when present; typed:
    `namesae.sae.metrics.SAEMetrics.load(folder / "metrics.json")`."""
    train_log: list[dict[str, Any]] = field(default_factory=list)
    """Progress records (step, loss, mse, l0, explained_variance) written during training."""
    training_model: Any = None
    """The live SAELens TrainingSAE in training units (only on the object `train_sae` returns)."""
    _warned_unchecked_space: bool = field(default=False, init=False, repr=False, compare=False)
    """Whether `namesae.sae.codes.check_space` has warned that this SAE records no space (it warns once)."""

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


# ---- disk ----------------------------------------------------------------------------------------------------
def _checksums(folder: Path, names: tuple[str, ...]) -> dict[str, str]:
    return {name: sha256_file(folder / name) for name in names if (folder / name).is_file()}


CHECKED_FILES = (CFG_FILE, WEIGHTS_FILE, METRICS_FILE, TRAIN_LOG_FILE)


def _info_with_checksums(info: dict[str, Any], folder: Path) -> dict[str, Any]:
    """namesae.json's content: header version 2, the checksums of the files now in `folder`, sealed."""
    return sealed({**info, "format": SAE_FORMAT, "format_version": SAE_FORMAT_VERSION,
                   "checksums": _checksums(folder, CHECKED_FILES)})


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
    state = {k: v.detach().contiguous().cpu() for k, v in inference_sae.state_dict().items()}
    with atomic_dir(folder) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE))
        atomic_write_text(tmp / CFG_FILE, json.dumps(inference_sae.cfg.to_dict()))
        if metrics is not None:
            save_metrics(metrics, tmp / METRICS_FILE)
        atomic_write_json(tmp / INFO_FILE, _info_with_checksums(info, tmp))


def write_saelens_files(inference_sae: Any, folder: Path, info: dict[str, Any],
                        metrics: dict[str, Any] | None = None) -> None:
    """Write the SAE files into an existing folder that holds other things too, each file atomically.

    namesae.json goes last: its `complete` flag is what marks a finished run.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in inference_sae.state_dict().items()}
    with atomic_file(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    atomic_write_text(folder / CFG_FILE, json.dumps(inference_sae.cfg.to_dict()))
    if metrics is not None:
        save_metrics(metrics, folder / METRICS_FILE)
    atomic_write_json(folder / INFO_FILE, _info_with_checksums(info, folder))


def _read_json_file(path: Path, kind: type, what: str, fix: str) -> Any:
    """A JSON file of an SAE folder, refused with one line (file, problem, fix) when unreadable or mis-shaped."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NamesaeError(f"{path}: invalid JSON ({err}); {fix}") from None
    except OSError as err:
        raise NamesaeError(f"{path}: cannot read it ({err.strerror}); {fix}") from None
    if not isinstance(data, kind):
        raise NamesaeError(f"{path}: {what} must be a JSON {'object' if kind is dict else 'list'}, got "
                           f"{type(data).__name__}; {fix}")
    return data


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_info(info: dict[str, Any], file: Path, fix: str) -> None:
    """Refuse a namesae.json whose fields have the wrong types (each named with the fix)."""
    version = info.get("format_version")
    if info.get("format") != SAE_FORMAT or not _positive_int(version) or version > SAE_FORMAT_VERSION:
        raise NamesaeError(f"{file}: not a namesae SAE file of a version this namesae reads (field 'format' "
                           f"{info.get('format')!r}, 'format_version' {version!r}; this namesae reads "
                           f"{SAE_FORMAT!r} versions 1-{SAE_FORMAT_VERSION}); {fix}")
    checks = {
        "space": lambda v: v is None or isinstance(v, str),
        "architecture": lambda v: isinstance(v, str),
        "d_in": _positive_int, "d_sae": _positive_int,
        "step": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0),
        "complete": lambda v: isinstance(v, bool),
        "config": lambda v: v is None or isinstance(v, dict),
        "normalization": lambda v: v is None or isinstance(v, dict),
        "checksums": lambda v: isinstance(v, dict) and all(isinstance(h, str) for h in v.values()),
    }
    for key, ok in checks.items():
        if key in info and not ok(info[key]):
            raise NamesaeError(f"{file}: field {key!r} has the wrong type ({info[key]!r:.80}); {fix}")
    norm = info.get("normalization")
    if isinstance(norm, dict):
        kind, scale = norm.get("kind", "none"), norm.get("scale")
        if kind not in NORMALIZATIONS:
            raise NamesaeError(f"{file}: field 'normalization.kind' is {kind!r}, not one of {list(NORMALIZATIONS)}; "
                               f"{fix}")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                                  or not math.isfinite(scale) or scale <= 0):
            raise NamesaeError(f"{file}: field 'normalization.scale' must be a number > 0, got {scale!r}; {fix}")


def _check_cfg(cfg: dict[str, Any], file: Path, fix: str) -> None:
    for key in ("d_in", "d_sae"):
        if not _positive_int(cfg.get(key)):
            raise NamesaeError(f"{file}: field {key!r} must be a positive integer, got {cfg.get(key)!r}; {fix}")
    if "architecture" in cfg and not isinstance(cfg["architecture"], str):
        raise NamesaeError(f"{file}: field 'architecture' must be a string, got {cfg['architecture']!r}; {fix}")


def _check_weights(file: Path, d_in: int, d_sae: int, fix: str) -> None:
    """Refuse a safetensors file that is damaged or whose tensors do not fit cfg.json's sizes."""
    from safetensors import SafetensorError, safe_open

    want = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
    try:
        with safe_open(str(file), framework="pt") as fh:
            keys = set(fh.keys())
            for key, shape in want.items():
                if key not in keys:
                    raise NamesaeError(f"{file}: tensor {key!r} is missing; {fix}")
                got = tuple(fh.get_slice(key).get_shape())
                if got != shape:
                    raise NamesaeError(f"{file}: tensor {key!r} has shape {list(got)}, cfg.json says "
                                       f"{list(shape)}; {fix}")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise NamesaeError(f"{file}: not a readable safetensors file ({type(err).__name__}: {err}); {fix}") from None


def _verify_checksums(path: Path, info: dict[str, Any], fix: str) -> None:
    sums = info.get("checksums") or {}
    for name in (CFG_FILE, WEIGHTS_FILE):
        if name not in sums:
            raise NamesaeError(f"{path / INFO_FILE}: field 'checksums' lacks {name!r}; {fix}")
    for name, digest in sums.items():
        if name not in CHECKED_FILES:
            raise NamesaeError(f"{path / INFO_FILE}: field 'checksums' names an unknown file {name!r}; {fix}")
        file = path / name
        if not file.is_file():
            raise NamesaeError(f"{file}: missing, but namesae.json records its checksum; {fix}")
        if sha256_file(file) != digest:
            raise NamesaeError(f"{file}: sha256 differs from the one namesae.json recorded when it was saved (the "
                               f"file is damaged or was changed); {fix}")


def load_sae(path: str | Path, device: str = "cpu", verify: bool = True) -> TrainedSAE:
    """Open an SAE folder written by namesae (or any SAELens folder: cfg.json + sae_weights.safetensors).

    `device` is any `namesae.devices.resolve_device` spec ("cpu", "cuda", "cuda:N", "mps", "auto"); `encode` and
    `decode` move their inputs there and return CPU tensors. With `verify` (the default) the sha256 of every file
    recorded in namesae.json is checked first. Every damaged or mis-shaped file is refused with a NamesaeError
    naming it, the field and the fix.
    """
    from namesae.devices import resolve_device

    device = resolve_device(device)
    path = Path(path)
    if not path.is_dir():
        raise NamesaeError(f"{path}: SAE folder not found")
    fix = ("restore the folder from a copy, or retrain it (`namesae train ... --overwrite`)")
    missing = [f for f in (CFG_FILE, WEIGHTS_FILE) if not (path / f).is_file()]
    if missing:
        hint = (" (training has not finished: run the same `namesae train` command again to resume)"
                if (path / "state").is_dir() else "")
        raise NamesaeError(f"{path}: not an SAE folder: missing {missing}{hint}")
    info: dict[str, Any] = {}
    cfg = _read_json_file(path / CFG_FILE, dict, "cfg.json", fix)
    if (path / INFO_FILE).is_file():
        info = _read_json_file(path / INFO_FILE, dict, "namesae.json", fix)
        _check_info(info, path / INFO_FILE, fix)
        if info["format_version"] >= CHECKSUMMED_FORMAT_VERSION:
            check_sealed(info, path / INFO_FILE, fix)
            if verify:
                _verify_checksums(path, info, fix)
        else:
            log.warning("%s: written before namesae recorded checksums (format_version %s); its files are not "
                        "verified", path / INFO_FILE, info["format_version"])
    else:
        metadata = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
        space = metadata.get("namesae_space")
        if isinstance(space, str) and space:
            info = {"space": space}
        log.warning("%s: no %s; loading as a plain SAELens SAE (weights not verified, no normalisation, space %s)",
                    path, INFO_FILE, repr(space) + " from cfg.json metadata" if info else
                    "unknown: only the dimension of a store can be checked")
    _check_cfg(cfg, path / CFG_FILE, fix)
    _check_weights(path / WEIGHTS_FILE, cfg["d_in"], cfg["d_sae"], fix)
    model = _load_saelens(path, device, fix)
    metrics = None
    if (path / METRICS_FILE).is_file():
        metrics = _read_json_file(path / METRICS_FILE, dict, "metrics.json", fix)
        metrics.pop("format_version", None)  # the measurements, as `train_sae` returns them
    train_log = []
    if (path / TRAIN_LOG_FILE).is_file():
        train_log = _read_json_file(path / TRAIN_LOG_FILE, list, "train_log.json", fix)
    norm = info.get("normalization") or {}
    return TrainedSAE(model=model, space=info.get("space"),
                      architecture=info.get("architecture", model.cfg.architecture()),
                      normalization=norm.get("scale"), path=path, info=info, metrics=metrics, train_log=train_log)


def _load_saelens(path: Path, device: str, fix: str) -> Any:
    """SAELens's loader over an already checked folder; anything it still refuses becomes one line."""
    import torch
    from sae_lens import SAE

    try:
        model = SAE.load_from_disk(str(path), device=device)
    except Exception as err:  # noqa: BLE001 -- a third-party loader over user files: any failure is a bad folder
        raise NamesaeError(f"{path}: SAELens cannot load this checkpoint ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else ''}); {fix}") from None
    model.eval()
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NamesaeError(f"{path / WEIGHTS_FILE}: tensor {name!r} holds NaN or Inf; {fix}")
    return model


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
