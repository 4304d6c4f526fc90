"""Malformed configs, JSON files and name lists are refused with one `namesae: error:` line (exit 2), never a
traceback; damaged SAE folders, training state and result files are refused or give bit-identical results."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import typing
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from reliability_sae import OUTCOMES, build_fixture, campaign, run_cli

from namesae.io import sealed, sha256_file

RNG_SEED = 17


def toml_value(value: typing.Any) -> str:
    """A TOML literal of a JSON-like value (inline tables for dicts)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def wrong_types(hint: typing.Any) -> list[typing.Any]:
    """Values of the wrong type for a field: a string for a number or boolean, a scalar for a list, a table."""
    if typing.get_origin(hint) in (typing.Union, __import__("types").UnionType):
        base = next(a for a in typing.get_args(hint) if a is not type(None))
    else:
        base = hint
    origin = typing.get_origin(base)
    if base is bool:
        return ["false", 1, [True]]
    if base in (int, float):
        return ["8", [1], {"x": 1}, True]
    if base is str:
        return [3, ["x"], {"x": 1}, True]
    if origin is tuple:
        inner = typing.get_args(base)[0]
        return ["image" if inner is str else "1", 3, [{"x": 1}], [True] if inner is not bool else ["x"]]
    return [{"x": 1}]


def config_cases(cls: type, section: str, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(label, TOML text) with one field of `cls` given a value of the wrong type."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        for value in wrong_types(hints[f.name]):
            out.append((f"{section}.{f.name}={value!r}", f"[{section}]\n{f.name} = {toml_value(value)}\n"))
    return out


def structural_cases(section: str, valid: str, rng: np.random.Generator, n_mutations: int) -> list[tuple[str, str]]:
    """Wrong nesting, unknown sections and fields, and seeded truncations / byte flips of a valid config."""
    out = [(f"unknown section [{section}x]", f"[{section}x]\nk = 3\n"),
           ("top-level key", f"k = 3\n[{section}]\n"),
           (f"{section} as a value", f"{section} = 3\n"),
           (f"{section} as a list", f"{section} = [1, 2]\n"),
           ("nested table", f"[{section}.sub]\nk = 3\n"),
           ("unknown field", f"[{section}]\nnot_a_field = 1\n"),
           ("bad TOML", f"[{section}\nk = \n"),
           ("not UTF-8", "\udcff")]
    data = valid.encode()
    for i in range(n_mutations):
        if i % 3 == 0:
            cut = int(rng.integers(1, len(data)))
            out.append((f"truncate {cut}", data[:cut].decode("utf-8", "surrogateescape")))
        else:
            pos, bit = int(rng.integers(0, len(data))), int(rng.integers(0, 7))
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            out.append((f"flip {pos}/{bit}", bytes(flipped).decode("utf-8", "surrogateescape")))
    return out


def assert_one_line_refusal(result, label: str, field: str | None = None) -> None:
    assert result.traceback is None, f"{label}: traceback\n{result.traceback}"
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.code == 2, f"{label}: exit {result.code}: {result.stderr}"
    assert lines and lines[-1].startswith("namesae: error:"), f"{label}: {lines}"
    assert sum(line.startswith("namesae: error:") for line in lines) == 1, f"{label}: {lines}"
    assert "Traceback" not in result.stderr, label
    if field is not None:
        assert field in lines[-1], f"{label}: the line does not name {field!r}: {lines[-1]}"


def write_text(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    """The campaign's store, trained SAE, killed run with state, and run folder of result files."""
    return build_fixture(tmp_path_factory.mktemp("fuzz") / "fx")


def test_malformed_toml_configs_are_refused_with_one_line(tmp_path):
    from namesae.embed import EmbedConfig
    from namesae.sae import TrainConfig
    from namesae.synth import SynthConfig

    rng = np.random.default_rng(RNG_SEED)
    valid_train = "[train]\narchitecture = \"topk\"\nd_sae = 32\nk = 3\nbatch_size = 64\nnormalize = true\n" \
                  "kinds = [\"image\"]\n"
    commands = {
        "train": ["train", "--store", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "o")],
        "synth": ["synth", "--out", str(tmp_path / "w")],
        "embed": ["embed", "--names", str(tmp_path / "names.txt"), "--out", str(tmp_path / "e.h5")],
    }
    cases = [("train", *c, c[0].split("=")[0].split(".")[1]) for c in config_cases(TrainConfig, "train")]
    cases += [("synth", *c, c[0].split("=")[0].split(".")[1]) for c in config_cases(SynthConfig, "synth")]
    cases += [("embed", label, text.replace("[embed]\n", "[embed]\nmodel = \"tiny\"\n") if field != "model" else text,
               field) for label, text in config_cases(EmbedConfig, "embed")
              for field in [label.split("=")[0].split(".")[1]]]
    cases += [("train", *c, None) for c in structural_cases("train", valid_train, rng, 40)]
    (tmp_path / "names.txt").write_text("Ada Lovelace\nAlan Turing\n")
    cfg = tmp_path / "c.toml"
    for command, label, text, field in cases:
        write_text(cfg, text)
        result = run_cli([*commands[command], "--config", str(cfg)])
        assert_one_line_refusal(result, f"{command} {label}", field)
    assert not (tmp_path / "o").exists() and not (tmp_path / "w").exists() and not (tmp_path / "e.h5").exists()
    assert len(cases) >= 250


def test_strings_are_not_booleans_or_lists():
    from namesae.config import config_from_dict
    from namesae.embed import EmbedConfig
    from namesae.errors import ConfigError
    from namesae.sae import TrainConfig

    with pytest.raises(ConfigError, match="'normalize' of EmbedConfig must be true or false, got 'false'"):
        config_from_dict(EmbedConfig, {"normalize": "false"}, "c.toml [embed]")
    with pytest.raises(ConfigError, match="'kinds' of TrainConfig must be a list of strings, got 'image'"):
        config_from_dict(TrainConfig, {"kinds": "image"}, "c.toml [train]")
    assert config_from_dict(TrainConfig, {"kinds": ["image"], "lr": 1}, "c").kinds == ("image",)


def reseal_sae(folder: Path, rehash: bool = True) -> None:
    """Rewrite namesae.json's checksums (with `rehash`) and seal, as a (buggy) writer of the damaged files would."""
    info_path = folder / "namesae.json"
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError:
        return
    if isinstance(info, dict):
        if rehash and isinstance(info.get("checksums"), dict):
            info["checksums"] = {n: sha256_file(folder / n) for n in info["checksums"] if (folder / n).is_file()}
        info_path.write_text(json.dumps(sealed(info)))


def json_cases(original: dict | list, swaps: dict[str, list]) -> list[tuple[str, typing.Any]]:
    """Wrong top-level types and nesting, and each named field given each of its wrong values (or removed)."""
    out = [("list", [original]), ("string", "x"), ("number", 3), ("null", None), ("wrapped", {"data": original})]
    if isinstance(original, dict):
        for key, values in swaps.items():
            for value in values:
                changed = dict(original)
                if value is KeyError:
                    changed.pop(key, None)
                else:
                    changed[key] = value
                out.append((f"{key}={value!r}", changed))
    return out


def test_malformed_sae_folder_json_is_refused_with_one_line(fixture, tmp_path):
    sae = tmp_path / "sae"
    shutil.copytree(fixture.sae, sae)
    args = ["features", "--sae", str(sae), "--store", str(fixture.store), "--out", str(tmp_path / "f"),
            "--no-progress"]
    cfg = json.loads((sae / "cfg.json").read_text())
    info = json.loads((sae / "namesae.json").read_text())
    cases = {
        "cfg.json": json_cases(cfg, {"d_in": ["16", 16.5, -1, None, KeyError], "d_sae": ["32", [32], 0, KeyError],
                                     "architecture": [3, ["topk"], "nonsense"]}),
        "namesae.json": json_cases(info, {
            "format_version": ["1", "x", 99, True, None, KeyError], "format": ["other", 3, KeyError],
            "normalization": ["unit", {"kind": "bogus"}, {"kind": "none", "scale": "x"}, {"scale": -1.0}, [1]],
            "space": [3, ["a"]], "architecture": [3, None], "step": ["5", -1], "complete": ["yes", 1],
            "config": [[1], "x"], "checksums": [[1], "x", {}, {"cfg.json": 3}, {"nope.bin": "00"}]}),
        "metrics.json": json_cases([], {})[:4],
        "train_log.json": [("dict", {"a": 1}), ("string", "x"), ("number", 3)],
    }
    n = 0
    for name, variants in cases.items():
        original = (sae / name).read_bytes()
        for label, value in [*variants, ("truncated", "TRUNC")]:
            text = original[: len(original) // 2] if value == "TRUNC" else json.dumps(value).encode()
            (sae / name).write_bytes(text)
            reseal_sae(sae, rehash=name != "namesae.json")
            assert_one_line_refusal(run_cli(args), f"{name} {label}")
            n += 1
        (sae / name).write_bytes(original)
        reseal_sae(sae)
    assert run_cli(args).code == 0  # restored: loads again
    assert n >= 60


def test_malformed_state_and_result_files_are_refused_with_one_line(fixture, tmp_path):
    run = tmp_path / "partial"
    shutil.copytree(fixture.partial, run)
    state = json.loads((run / "state" / "state.json").read_text())
    train_args = ["train", "--store", str(fixture.store), "--out", str(run), "--config", str(fixture.config),
                  "--no-progress"]
    variants = json_cases(state, {k: [KeyError, "x", [1]] for k in (
        "n_training_steps", "n_training_samples", "optimizer_state_keys", "lr_scheduler", "state_version",
        "optimizer_param_groups", "coefficient_schedulers", "started_fine_tuning")})
    for label, value in variants:
        (run / "state" / "state.json").write_text(json.dumps(sealed(value) if isinstance(value, dict) else value))
        assert_one_line_refusal(run_cli(train_args), f"state.json {label}")
    assert len(variants) >= 25

    report_run = tmp_path / "run"
    shutil.copytree(fixture.run, report_run)
    report_args = ["report", "--run", str(report_run), "--out", str(tmp_path / "site")]
    identity = json.loads((report_run / "identity.json").read_text())
    files = {
        "run.json": [("list", ["x"]), ("string", "x"), ("identity=3", {"identity": 3}),
                     ("identity=list", {"identity": ["a"]}), ("identity=''", {"identity": ""})],
        "identity.json": [("names=x", {"names": "x"}), ("names=[1]", {"names": [1, 2]}),
                          ("name=3", {"names": [{"name": 3}]}), ("string", "x"), ("number", 3),
                          ("checksum only", {**identity, "names": identity["names"][:1]})],
        "features.json": [("features=x", {"features": "x"}), ("feature='0'", {"features": [{"feature": "0"}]}),
                          ("features=[[]]", {"features": [[]]})],
        "emergence/emergence.json": [("axis_values=str", {"axis_values": "abc", "names": []}),
                                     ("axis_values=[a]", {"axis_values": ["a"], "names": []}),
                                     ("dedication=x", {"names": [{"name": "n", "dedication": "x"}]}),
                                     ("phases=[a]", {"names": [{"name": "n", "phases": ["a"]}]})],
    }
    (report_run / "emergence").mkdir(exist_ok=True)
    for name, cases in files.items():
        path = report_run / name
        original = path.read_bytes() if path.is_file() else None
        for label, value in [*cases, ("truncated", "TRUNC")]:
            text = (original or b'{"a": 1}')[: max(1, len(original or b"{}") // 2)] if value == "TRUNC" else \
                json.dumps(value).encode()
            path.write_bytes(text)
            assert_one_line_refusal(run_cli(report_args), f"{name} {label}", name.split("/")[-1])
        if original is None:
            path.unlink()
        else:
            path.write_bytes(original)


def test_malformed_name_lists_are_refused_with_one_line(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    base = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Zoë Ñandú"]
    defects = ["\x00", "\x07", "\u200b", "\ud800", "x" * 400]
    cases: list[tuple[str, bytes]] = [("names.txt", b""), ("names.txt", b"\n# only a comment\n"),
                                      ("names.txt", b"\xff\xfe\xfa bad utf8"), ("names.csv", b"first,last\na,b\n"),
                                      ("names.csv", b'name\n""\n'), ("names.json", b'{"name": "x"}'),
                                      ("names.json", b"[1, 2]"), ("names.json", b'[{"nom": "x"}]'),
                                      ("names.json", b'["a", ""]'), ("names.json", b'["a", null]'),
                                      ("names.json", b'["a", ["b"]]'), ("names.json", b'["a",'), ("names.xml", b"a")]
    for i in range(60):
        names = list(base)
        names.insert(int(rng.integers(0, len(names) + 1)), rng.choice(base) + defects[i % len(defects)])
        suffix = ("txt", "csv", "json")[i % 3]
        if suffix == "txt":
            body = "\n".join(names)
        elif suffix == "csv":
            body = "name\n" + "\n".join('"' + n.replace('"', '""') + '"' for n in names)
        else:
            body = json.dumps(names)
        cases.append((f"names.{suffix}", body.encode("utf-8", "surrogatepass")))
    for j, (name, data) in enumerate(cases):
        path = tmp_path / f"{j}_{name}"
        path.write_bytes(data)
        result = run_cli(["embed", "--names", str(path), "--model", "tiny", "--out", str(tmp_path / "e.h5"),
                          "--no-progress"])
        assert_one_line_refusal(result, f"{name} case {j}: {data[:60]!r}")
    assert not (tmp_path / "e.h5").exists()
    assert len(cases) >= 70


def test_damaged_sae_folders_state_and_results_are_refused_or_identical(fixture):
    report = campaign(fixture, {"sae": 60, "state": 20, "result": 20}, seed=RNG_SEED)
    assert report["total_cases"] == 100
    assert report["failures"] == [], report["failures"][:3]
    for target in ("sae", "state", "result"):
        counts = {o: report[target][o] for o in OUTCOMES}
        assert counts["WRONG"] == 0 and counts["CRASH"] == 0, (target, counts)
        assert counts["refused"] >= 0.8 * report[target]["cases"], (target, counts)
