"""Reliability: safe model files, checked checkpoints, whole output sets, input checks.

Every case of docs/reliability.md is replayed here: a crafted model file must not run its
payload, damaged files of every kind are one-line errors, concurrent runs into one folder leave
one complete run, and bad parameters or data are refused with messages about the input.
"""

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import sparse
from sklearn.exceptions import NotFittedError

import divpred
from divpred import (
    DivideAndPredictClassifier,
    MultinomialLogit,
    Partitioner,
    PurifiedClassifier,
    Purifier,
    _io,
    cli,
)
from divpred._checkpoint import CheckpointError
from divpred._model_file import SCHEMA_VERSION, load_model, save_model

from .conftest import assert_one_line_error, two_rule_letters

SRC = str(Path(divpred.__file__).resolve().parents[1])
IO_FILE = str(Path(_io.__file__).resolve())
FUZZ = settings(max_examples=120, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def regions_data(n=160, seed=0):
    """Two input regions (x0 < 0, x0 > 0) with opposite labelling rules; blocks = regions."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    blocks = (X[:, 0] > 0).astype(np.int64)
    y = np.where(blocks == 0, X[:, 1] > 0, X[:, 1] < 0).astype(np.int64)
    return X, np.array(["no", "yes"], dtype=object)[y], blocks


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "train.csv"
    two_rule_letters(120, 30, seed=0).to_csv(path, index=False)
    return path


def small_purifier(checkpoint=None, max_iter=3):
    return Purifier(MultinomialLogit(alpha=1e-3), k=2, max_iter=max_iter, min_size=10,
                    checkpoint=checkpoint)


def small_data(n=40, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = (X[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    return X, y


# ======================================================================== model files
def _fitted_models():
    X, y, blocks = regions_data()
    hard = DivideAndPredictClassifier(routing="hard", random_state=0).fit(X, y, blocks=blocks)
    soft = DivideAndPredictClassifier(routing="soft", random_state=0).fit(X, y, blocks=blocks)
    # a block with a single class gets a constant expert
    one_class = blocks.copy()
    one_class[(blocks == 1) & (y == "no")] = -1
    const = DivideAndPredictClassifier(random_state=0).fit(X, y, blocks=one_class)
    purified = PurifiedClassifier(
        purifier=Purifier(MultinomialLogit(alpha=1e-3), k=5, max_iter=4, stop="knee"),
        random_state=0,
    ).fit(X, y)
    return X, {"dnp-hard": ("dnp", hard), "dnp-soft": ("dnp", soft),
               "dnp-constant": ("dnp", const), "purified": ("purified", purified)}


def test_every_estimator_round_trips_to_identical_predictions(tmp_path):
    X, models = _fitted_models()
    assert models["dnp-hard"][1].routing_used_ == "hard"
    assert models["dnp-soft"][1].routing_used_ == "soft"
    assert any(type(e).__name__ == "_ConstantExpert" for e in models["dnp-constant"][1].experts_)
    for name, (kind, est) in models.items():
        path = tmp_path / f"{name}.dpm"
        save_model(path, est, kind=kind)
        _, content = load_model(path)
        loaded = content["estimator"]
        np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
        np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
        assert loaded.classes_.dtype == est.classes_.dtype
        # the file is plain data: numpy opens it without pickle
        with np.load(path, allow_pickle=False) as archive:
            assert json.loads(str(archive["__model__"]))["schema_version"] == SCHEMA_VERSION
        # saving the loaded model gives the same bytes: nothing was lost or added
        save_model(tmp_path / "again.dpm", loaded, kind=kind)
        assert (tmp_path / "again.dpm").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("kind", ["purified", "dnp"])
def test_fit_writes_identical_bytes_for_the_same_data(table, tmp_path, capsys, kind):
    digests = []
    for i in range(2):
        model = tmp_path / f"m{i}.dpm"
        code, _, err = run_cli(capsys, "-q", "fit", table, "--label", "cls", "--model", model,
                               "--kind", kind)
        assert code == 0, err
        digests.append(hashlib.sha256(model.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    with zipfile.ZipFile(tmp_path / "m0.dpm") as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    code, out, err = run_cli(capsys, "predict", table, "--model", tmp_path / "m0.dpm", "--json")
    assert code == 0, err
    assert json.loads(out)["accuracy"] > 0.5


class _Payload:
    """Unpickling this creates the marker file: the attack the model format must prevent."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _npy(array, allow_pickle=False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def test_a_crafted_model_file_does_not_run_its_payload(table, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Payload(marker))
    model = tmp_path / "good.dpm"
    run_cli(capsys, "-q", "fit", table, "--label", "cls", "--model", model)
    with zipfile.ZipFile(model) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    description = json.loads(str(np.load(model)["__model__"]))
    crafted = {
        # the old format: a JSON header and a pickle (its checksum recomputed)
        "old-format.dpm": b"DIVPRED-MODEL\n" + json.dumps(
            {"format_version": 1, "payload_sha256": hashlib.sha256(payload).hexdigest()}
        ).encode() + b"\n" + payload,
        "bare-pickle.dpm": payload,
    }
    evil_array = np.empty(1, dtype=object)
    evil_array[0] = _Payload(marker)
    for path, members_ in {
        # an array of the model replaced by a pickled object array
        "object-array.dpm": {**members, "a0.npy": _npy(evil_array, allow_pickle=True)},
        # the description itself as a pickle
        "object-description.dpm": {**members, "__model__.npy": _npy(evil_array, True)},
        # a description naming a class outside the format
        "foreign-class.dpm": {**members, "__model__.npy": _npy(np.array(json.dumps(
            {**description, "estimator": {"__estimator__": "Popen", "params": {
                "__dict__": [["args", ["touch", str(marker)]]]}, "fitted": {"__dict__": []}}}
        )))},
    }.items():
        _zip(tmp_path / path, members_)
    for name in [*crafted, "object-array.dpm", "object-description.dpm", "foreign-class.dpm"]:
        if name in crafted:
            (tmp_path / name).write_bytes(crafted[name])
        code, out, err = run_cli(capsys, "predict", table, "--model", tmp_path / name)
        assert_one_line_error(code, out, err, str(tmp_path / name))
        assert "allow_pickle" not in err
        assert not marker.exists(), name
    # control: the payload does run when unpickled, so the test could fail
    pickle.loads(payload)
    assert marker.exists()


def test_model_of_a_newer_schema_is_refused(table, tmp_path, capsys):
    model = tmp_path / "m.dpm"
    run_cli(capsys, "-q", "fit", table, "--label", "cls", "--model", model)
    with zipfile.ZipFile(model) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    description = json.loads(str(np.load(model)["__model__"]))
    for version, fragment in ((SCHEMA_VERSION + 1, "newer divpred"),
                              (SCHEMA_VERSION - 1, "refit")):
        path = tmp_path / f"v{version}.dpm"
        text = json.dumps({**description, "schema_version": version})
        _zip(path, {**members, "__model__.npy": _npy(np.array(text))})
        code, out, err = run_cli(capsys, "predict", table, "--model", path)
        assert_one_line_error(code, out, err, fragment)
    wrong_kind = tmp_path / "kind.dpm"
    _zip(wrong_kind, {**members, "__model__.npy": _npy(np.array(json.dumps(
        {**description, "kind": "dnp"})))})
    with pytest.raises(ValueError, match="not a dnp model"):
        load_model(wrong_kind)
    # a model whose weights do not fit its classes
    shapes = {k: np.load(model)[k].shape for k in np.load(model).files if k != "__model__"}
    two_d = next(k for k, s in shapes.items() if len(s) == 2)
    bad = tmp_path / "shape.dpm"
    _zip(bad, {**members, f"{two_d}.npy": _npy(np.zeros((3, 1)))})
    with pytest.raises(ValueError, match="damaged or foreign"):
        load_model(bad)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    X, models = _fitted_models()
    folder = tmp_path_factory.mktemp("fuzz-model")
    kind, est = models["dnp-soft"]
    save_model(folder / "m.dpm", est, kind=kind)
    return folder, (folder / "m.dpm").read_bytes(), X, est.predict_proba(X)


def _damage(raw: bytes, data) -> bytes:
    if data.draw(st.booleans(), label="truncate"):
        return raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    buf = bytearray(raw)
    pos = data.draw(st.integers(0, len(raw) - 1), label="position")
    buf[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    return bytes(buf)


@FUZZ
@given(data=st.data())
def test_fuzz_model_reader_gives_value_error_or_the_same_model(saved_model, data):
    folder, raw, X, proba = saved_model
    path = folder / "damaged.dpm"
    path.write_bytes(_damage(raw, data))
    try:
        _, content = load_model(path)
    except ValueError:
        return
    # an undetected change (zip bytes no reader uses) must leave the model as it was
    np.testing.assert_array_equal(content["estimator"].predict_proba(X), proba)


# ======================================================================== checkpoints
def _checkpoint_arrays(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _edit(path, **changes):
    _io.write_npz(path, **{**_checkpoint_arrays(path), **changes})


def _truncated(p):
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _empty(p):
    p.write_bytes(b"")


def _flipped(p):
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("records.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw = bytearray(p.read_bytes())
    raw[start + 200] ^= 0x10  # inside the history's bytes
    p.write_bytes(bytes(raw))


def _order_out_of_range(p):
    order = _checkpoint_arrays(p)["order"]
    order[0] = 10**6
    _edit(p, order=order)


def _order_repeated(p):
    order = _checkpoint_arrays(p)["order"]
    order[1] = order[0]
    _edit(p, order=order)


def _newer(p):
    _edit(p, version=np.array(99))


def _other_data(p):
    _edit(p, fingerprint=np.array("0" * 64))


def _history_edited(p):
    records = json.loads(str(_checkpoint_arrays(p)["records"]))
    records[1]["size"] += 1
    _edit(p, records=np.array(json.dumps(records)))


def _theta_missing(p):
    arrays = _checkpoint_arrays(p)
    arrays.pop("theta_1")
    p.unlink()
    _io.write_npz(p, **arrays)


def _not_a_checkpoint(p):
    np.savez(p, X=np.zeros(3))


def _a_folder(p):
    p.unlink()
    p.mkdir()


CHECKPOINT_DAMAGE = {
    "truncated": (_truncated, "cannot read checkpoint"),
    "empty": (_empty, "cannot read checkpoint"),
    "byte flipped": (_flipped, "cannot read checkpoint"),
    "order out of range": (_order_out_of_range, "outside"),
    "order repeats a row": (_order_repeated, "repeats rows"),
    "newer format": (_newer, "newer divpred"),
    "other data": (_other_data, "other data or parameters"),
    "history edited": (_history_edited, "does not match"),
    "model missing": (_theta_missing, "missing"),
    "foreign npz": (_not_a_checkpoint, "not a divpred checkpoint"),
    "a folder": (_a_folder, "not a regular file"),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_DAMAGE))
def test_damaged_checkpoint_is_a_one_line_error_and_is_left_alone(table, tmp_path, capsys,
                                                                   case):
    damage, fragment = CHECKPOINT_DAMAGE[case]
    ckpt = tmp_path / "run.ckpt.npz"
    common = ("purify", table, "--label", "cls", "--k", "5", "--stop", "none", "--checkpoint",
              ckpt, "-q")
    code, _, err = run_cli(capsys, *common, "--iterations", "2", "--out", tmp_path / "a")
    assert code == 0, err
    damage(ckpt)
    before = ckpt.read_bytes() if ckpt.is_file() else None
    code, out, err = run_cli(capsys, *common, "--iterations", "3", "--out", tmp_path / "b")
    assert_one_line_error(code, out, err, str(ckpt), fragment, "delete it", "--checkpoint")
    assert (ckpt.read_bytes() if ckpt.is_file() else None) == before  # not overwritten
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-ckpt")
    X, y = small_data()
    reference = small_purifier(folder / "c.npz").fit(X, y)
    return folder, (folder / "c.npz").read_bytes(), X, y, reference.history_


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_reader_gives_value_error_or_the_same_run(saved_checkpoint, data):
    folder, raw, X, y, history = saved_checkpoint
    path = folder / "damaged.npz"
    path.write_bytes(_damage(raw, data))
    try:
        resumed = small_purifier(path).fit(X, y)
    except ValueError as exc:
        assert isinstance(exc, CheckpointError) and str(path) in str(exc)
        return
    pd.testing.assert_frame_equal(resumed.history_, history)


def test_damaged_partition_checkpoint_is_an_error_not_a_different_result(table, tmp_path):
    frame = pd.read_csv(table)
    X = pd.get_dummies(frame.drop(columns="cls"), dtype=float).to_numpy()
    y = frame["cls"].to_numpy()
    ckdir = tmp_path / "ck"
    params = dict(model=MultinomialLogit(alpha=1e-3), k=5, input_split=False, random_state=0)
    reference = Partitioner(checkpoint=ckdir, **params).fit(X, y)
    state = ckdir / "partition-state.json"
    text = state.read_text()
    # a digit changed inside a stored V: still valid JSON, caught by the checksum
    pos = text.index('"v": ') + 6
    state.write_text(text[:pos] + ("1" if text[pos] != "1" else "2") + text[pos + 1:])
    with pytest.raises(CheckpointError, match="checksum"):
        Partitioner(checkpoint=ckdir, **params).fit(X, y)
    state.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="damaged or not a divpred partition"):
        Partitioner(checkpoint=ckdir, **params).fit(X, y)
    state.write_text(text)
    # a damaged purification checkpoint inside the folder is not mistaken for a data condition
    inner = sorted(ckdir.glob("purify-*.npz"))[0]
    inner.write_bytes(inner.read_bytes()[:100])
    state.unlink()  # the partition state is recomputed and reads the purification checkpoints
    with pytest.raises(CheckpointError, match=inner.name):
        Partitioner(checkpoint=ckdir, **params).fit(X, y)
    assert reference.n_blocks_ >= 1


# ======================================================================== output sets
def _staged_writer_script(out, tag, files, delay):
    return textwrap.dedent(f"""
        import importlib.util, json, sys, time
        from pathlib import Path
        # _io alone (numpy and the standard library): the processes start in a blink
        spec = importlib.util.spec_from_file_location("staged_io", {IO_FILE!r})
        _io = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_io)
        out, tag = Path({str(out)!r}), {tag!r}

        def merge(stage, final):
            path = final / "summary.json"
            done = json.loads(path.read_text()) if path.exists() else {{}}
            time.sleep({delay})  # a read-modify-write race without the lock
            done[tag] = True
            (stage / "summary.json").write_text(json.dumps(done))

        with _io.staged_output(out, keep_previous=True, before_commit=merge) as stage:
            for name in {files!r}:
                (stage / name).write_text(tag)
                time.sleep({delay})
    """)


def test_concurrent_runs_into_one_folder_leave_one_complete_set(tmp_path):
    out = tmp_path / "shared"
    tags = [f"run{i}" for i in range(4)]
    procs = [subprocess.Popen([sys.executable, "-c", _staged_writer_script(
        out, tag, ["a.csv", "b.csv", "c.png"], 0.2)]) for tag in tags]
    assert [p.wait(timeout=120) for p in procs] == [0] * len(tags)
    contents = {name: (out / name).read_text() for name in ("a.csv", "b.csv", "c.png")}
    assert len(set(contents.values())) == 1  # all three files from the same run
    assert json.loads((out / "summary.json").read_text()) == dict.fromkeys(tags, True)
    manifest = _io.read_manifest(out)
    for name, digest in manifest.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".divpred-manifest.json", "a.csv", "b.csv", "c.png", "summary.json"])


@pytest.mark.slow  # three full CLI processes (~40 s on 2 busy cores)
def test_concurrent_purify_runs_leave_one_consistent_run(table, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": SRC}
    runs = {"3": "4", "5": "3", "7": "2"}  # --k: --iterations, every run different
    procs = [subprocess.Popen([sys.executable, "-m", "divpred.cli", "-q", "purify", str(table),
                               "--label", "cls", "--k", k, "--iterations", it,
                               "--stop", "none", "--out", str(out)],
                              env=env, stderr=subprocess.PIPE)
             for k, it in runs.items()]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
        p.stderr.close()
    history = pd.read_csv(out / "history.csv")
    k = int(history["size"].iloc[0] - history["size"].iloc[1])
    assert str(k) in runs and len(history) == int(runs[str(k)]) + 1
    keep = np.load(out / "keep_mask.npy")
    assert keep.sum() == history["size"].iloc[-1]
    np.testing.assert_array_equal(pd.read_csv(out / "kept_rows.csv")["row"],
                                  np.nonzero(keep)[0])
    manifest = _io.read_manifest(out)
    assert sorted(manifest) == ["history.csv", "keep_mask.npy", "kept_rows.csv",
                                "purification.png"]
    for name, digest in manifest.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert not [p for p in out.iterdir() if p.name.startswith(".divpred-stage")]


def test_a_failed_output_keeps_the_earlier_run_whole(table, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    args = ("-q", "purify", table, "--label", "cls", "--k", "5", "--out", out)
    assert run_cli(capsys, *args, "--iterations", "2")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def no_space(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_io, "save_figure", no_space)
    code, stdout, err = run_cli(capsys, *args, "--iterations", "3")
    # the error names the user's file, not the hidden staging copy
    assert_one_line_error(code, stdout, err, "No space left", str(out))
    assert ".divpred-stage" not in err and ".tmp" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_files_of_an_earlier_set_are_removed(tmp_path):
    with _io.staged_output(tmp_path / "o") as stage:
        (stage / "report.html").write_text("old")
        (stage / "history.csv").write_text("old")
    with _io.staged_output(tmp_path / "o") as stage:
        (stage / "history.csv").write_text("new")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [".divpred-manifest.json",
                                                                 "history.csv"]


def test_other_commands_outputs_in_the_same_folder_are_kept(table, tmp_path, capsys):
    out = tmp_path / "o"
    assert run_cli(capsys, "-q", "purify", table, "--label", "cls", "--iterations", "1",
                   "--out", out)[0] == 0
    purified = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix != ".json"}
    with _io.staged_output(out, set_name="other") as stage:
        (stage / "blocks.csv").write_text("x")
    assert {p.name: p.read_bytes() for p in out.iterdir()
            if p.name in purified} == purified
    assert set(_io.read_manifest(out, "purify")) == set(purified)
    assert set(_io.read_manifest(out)) == {*purified, "blocks.csv"}


def test_stages_of_killed_runs_are_cleaned_up(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / f".divpred-stage-{dead.pid}-abc"
    stale.mkdir()
    (stale / "history.csv").write_text("half")
    with _io.staged_output(out) as stage:
        (stage / "x.csv").write_text("1")
    assert not stale.exists()


@pytest.mark.parametrize("command", [
    ("purify", "--out", "{bad}/o"),
    ("partition", "--out", "{bad}/o"),
    ("fit", "--model", "{bad}/m.dpm"),
])
def test_unwritable_output_is_found_before_any_work(table, tmp_path, capsys, monkeypatch,
                                                    command):
    blocker = tmp_path / "file"
    blocker.write_text("x")

    def forbidden(*a, **k):
        raise AssertionError("the computation ran before --out was checked")

    for cls in (Purifier, Partitioner, PurifiedClassifier):
        monkeypatch.setattr(cls, "fit", forbidden)
    name, flag, target = command
    code, out, err = run_cli(capsys, name, table, "--label", "cls", flag,
                             target.format(bad=blocker))
    assert_one_line_error(code, out, err, str(blocker), "not a")


# ======================================================================== parameters and data
@pytest.mark.parametrize("argv, fragment", [
    (["purify", "--k", "500"], "k=500"),
    (["purify", "--k", "40"], "--k 40 is too large for 120 rows"),
    (["partition", "--k", "500"], "k=500"),
    (["partition", "--min-block-size", "500"], "min_block_size=500 is larger than the 120"),
])
def test_impossible_sizes_are_errors(table, tmp_path, capsys, argv, fragment):
    code, out, err = run_cli(capsys, argv[0], table, "--label", "cls", *argv[1:],
                             "--out", tmp_path / "o")
    assert_one_line_error(code, out, err, fragment)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("params, fragment", [
    ({"min_size": -5}, "min_size"), ({"min_size": 0}, "min_size"), ({"tol": -1}, "tol"),
    ({"tol": float("nan")}, "tol"), ({"knee_ratio": 0}, "knee_ratio"),
    ({"patience": 0}, "patience"), ({"min_size": 1000}, "min_size=1000"),
    ({"k": 40}, "k=40"),
])
def test_purifier_rejects_bad_parameters(params, fragment):
    X, y = small_data()
    with pytest.raises(ValueError, match=fragment):
        Purifier(**params).fit(X, y)


def test_continuous_target_is_rejected(tmp_path, capsys):
    X, _ = small_data(120)
    y = X[:, 0] * 3.7 + 0.1
    for est in (MultinomialLogit(), Purifier(k=5), PurifiedClassifier()):
        with pytest.raises(ValueError, match="looks like a regression target"):
            est.fit(X, y)
    # integer-valued floats are class codes, not a regression target
    MultinomialLogit().fit(X, np.round(np.abs(y) > 1).astype(float))
    path = tmp_path / "reg.csv"
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "target": y}).to_csv(path, index=False)
    code, out, err = run_cli(capsys, "purify", path, "--label", "target", "--out", tmp_path / "o")
    assert_one_line_error(code, out, err, "regression target")


def test_sparse_input_is_a_clear_error():
    X, y = small_data()
    Xs = sparse.csr_matrix(X)
    for fit in (MultinomialLogit().fit, Purifier(k=2).fit, PurifiedClassifier().fit,
                DivideAndPredictClassifier().fit):
        with pytest.raises(ValueError, match=r"sparse matrix .*toarray"):
            fit(Xs, y)
    fitted = MultinomialLogit().fit(X, y)
    with pytest.raises(ValueError, match="sparse"):
        fitted.predict(Xs)


def test_predict_before_fit_raises_not_fitted_error():
    X, _ = small_data()
    for est in (MultinomialLogit(), PurifiedClassifier(), DivideAndPredictClassifier()):
        for method in (est.predict, est.predict_proba):
            with pytest.raises(NotFittedError):
                method(X)


def test_huge_features_give_a_message_about_scaling(tmp_path, capsys):
    X, y = small_data()
    with pytest.raises(ValueError, match="rescale"):
        MultinomialLogit().fit(X * 1e300, y)
    path = tmp_path / "big.npz"
    np.savez(path, X=X * 1e300, y=y)
    code, out, err = run_cli(capsys, "variance", path)
    assert_one_line_error(code, out, err, "rescale")
    assert "infs or NaNs" not in err


def test_damaged_data_npz_has_no_allow_pickle_advice(tmp_path, capsys):
    X, y = small_data()
    good = tmp_path / "d.npz"
    np.savez(good, X=X, y=y)
    cases = {"truncated.npz": good.read_bytes()[:300], "text.npz": b"X,y\n1,2\n"}
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
    np.savez(tmp_path / "objects.npz", X=X, y=np.array(list(y), dtype=object))
    for name in [*cases, "objects.npz"]:
        code, out, err = run_cli(capsys, "variance", tmp_path / name)
        assert_one_line_error(code, out, err, str(tmp_path / name))
        assert "allow_pickle" not in err and "pickled data" not in err
    assert "Python objects" in run_cli(capsys, "variance", tmp_path / "objects.npz")[2]


@pytest.mark.parametrize("argv", [
    ["purify", "x.csv", "--k", "two"],
    ["purify", "x.csv", "--method", "magic"],
    ["fit", "x.csv"],
    ["nosuchcommand"],
    ["variance", "x.csv", "--bogus"],
])
def test_usage_errors_are_one_line(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_error(code, out, err)
    assert "usage:" not in err


def test_predict_on_labels_of_another_type_warns(table, tmp_path, capsys):
    model = tmp_path / "m.dpm"
    run_cli(capsys, "-q", "fit", table, "--label", "cls", "--model", model)
    frame = pd.read_csv(table)
    frame["cls"] = np.where(frame["cls"] == "high", 1, 0)
    other = tmp_path / "ints.csv"
    frame.to_csv(other, index=False)
    code, out, err = run_cli(capsys, "predict", other, "--model", model, "--json")
    assert code == 0
    assert json.loads(out)["accuracy"] is None
    assert "divpred: warning: none of the 120 labels" in err and "int" in err and "str" in err


def test_a_stray_string_in_a_numeric_column_names_column_and_row(tmp_path, capsys):
    frame = two_rule_letters(120, 30, seed=0, numeric_column="x")
    frame["x"] = frame["x"].astype(object)
    frame.loc[16, "x"] = "1.2.3"
    path = tmp_path / "typo.csv"
    frame.to_csv(path, index=False)
    code, out, err = run_cli(capsys, "purify", path, "--label", "cls", "--out", tmp_path / "o")
    assert_one_line_error(code, out, err, "'x'", "'1.2.3'", "data row 17", "line 18")
    # a real categorical column with a few numeric-looking values is still categories
    frame = two_rule_letters(120, 30, seed=0)
    frame.loc[:5, "Q0"] = "7"
    frame.to_csv(path, index=False)
    assert run_cli(capsys, "-q", "purify", path, "--label", "cls", "--iterations", "1",
                   "--out", tmp_path / "o")[0] == 0
