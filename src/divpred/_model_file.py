"""Model files that hold only data: loading one never runs code from it.

Format (schema version 2)
-------------------------
An ``.npz`` archive (a zip of ``.npy`` arrays, readable with ``np.load(f, allow_pickle=False)``):

``__model__``
    0-d text array: a JSON description ``{"format": "divpred-model", "schema_version": 2,
    "divpred_version", "kind", "classes", "n_features", "label", "feature_names",
    "estimator", "encoder"}``.
``a0``, ``a1``, ...
    The numeric and text arrays the description refers to as ``{"__array__": "a<i>"}``.

``estimator`` and ``encoder`` describe objects as ``{"__estimator__": class name, "params":
..., "fitted": ...}``: the class must be one of a fixed list (:data:`SAVED_CLASSES`), is
constructed from its parameters with its own ``__init__`` (which only stores them) and gets its
fitted attributes (the public names ending in ``_``) set from the data. Other values are JSON
numbers, strings, lists, or tagged dicts for tuples, mappings, non-finite floats, object arrays
of JSON values and pandas DataFrames. After loading, every object is checked (shapes, dtypes,
classes, blocks) and so is the whole (kind, classes, number of features); any failure is a
ValueError.

The bytes of a file are a function of the model only: the JSON has a fixed key order, wall
times (``Purifier.seconds_``) are not saved and the zip entries have a fixed date.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import _io

__all__ = ["FORMAT", "SAVED_CLASSES", "SCHEMA_VERSION", "json_label", "load_model", "save_model"]

FORMAT = "divpred-model"
SCHEMA_VERSION = 2  # 1: a pickle behind a JSON header (no longer read: loading it ran code)
KIND_CLASSES = {"purified": "PurifiedClassifier", "dnp": "DivideAndPredictClassifier"}
SAVED_CLASSES = ("DivideAndPredictClassifier", "LogisticRegression", "MultinomialLogit",
                 "Partitioner", "PurifiedClassifier", "Purifier", "TabularEncoder",
                 "_ConstantExpert")
_DESCRIPTION = "__model__"
_UNSAVED = {"Purifier": {"seconds_"}}  # wall times: not part of the model
_OLD_MAGIC = b"DIVPRED-MODEL\n"
_LINEAR = ("MultinomialLogit", "LogisticRegression")
_FITTED_NAME = re.compile(r"^[a-z][a-z0-9_]*_$")


class _Invalid(Exception):
    """A model file whose content does not describe a valid model."""


def _classes() -> dict[str, type]:
    from sklearn.linear_model import LogisticRegression

    from .data.loaders import TabularEncoder
    from .estimators import DivideAndPredictClassifier, PurifiedClassifier, _ConstantExpert
    from .models import MultinomialLogit
    from .partition import Partitioner
    from .purify import Purifier

    found = {c.__name__: c for c in (DivideAndPredictClassifier, LogisticRegression,
                                     MultinomialLogit, Partitioner, PurifiedClassifier,
                                     Purifier, TabularEncoder, _ConstantExpert)}
    assert tuple(sorted(found)) == SAVED_CLASSES
    return found


# ----------------------------------------------------------------------------- save
def save_model(path, estimator, *, kind: str, encoder=None, label=None,
               feature_names=None) -> dict:
    """Write a fitted ``estimator`` (and its data encoder) to ``path`` atomically.

    Returns
    -------
    dict
        The JSON description stored in the file.
    """
    from . import __version__

    if kind not in KIND_CLASSES or type(estimator).__name__ != KIND_CLASSES[kind]:
        raise ValueError(f"kind {kind!r} does not match a {type(estimator).__name__}")
    writer = _Writer(_classes())
    description = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "divpred_version": __version__,
        "kind": kind,
        "classes": [json_label(c) for c in estimator.classes_],
        "n_features": int(estimator.n_features_in_),
        "label": label,
        "feature_names": None if feature_names is None else [str(f) for f in feature_names],
        "estimator": writer.encode(estimator),
        "encoder": writer.encode(encoder),
    }
    text = json.dumps(description, allow_nan=False, separators=(",", ":"))
    _io.write_npz(path, **{_DESCRIPTION: np.array(text)}, **writer.arrays)
    return description


def json_label(value):
    """A JSON value for a scalar label (numpy scalars become Python ones)."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


class _Writer:
    def __init__(self, classes: dict[str, type]):
        self.classes = classes
        self.arrays: dict[str, np.ndarray] = {}

    def encode(self, value):
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, int | np.integer):
            return int(value)
        if isinstance(value, float | np.floating):
            value = float(value)
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                return {"__objects__": [self.encode(v) for v in value.ravel()],
                        "shape": list(value.shape)}
            name = f"a{len(self.arrays)}"
            self.arrays[name] = value
            return {"__array__": name}
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v) for v in value]}
        if isinstance(value, dict):
            return {"__dict__": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if isinstance(value, pd.DataFrame):
            return {"__frame__": {
                "columns": [self.encode(c) for c in value.columns],
                "data": [self.encode(value.iloc[:, j].to_numpy()) for j in range(value.shape[1])],
                "index": self.encode(value.index.to_numpy()),
            }}
        name = type(value).__name__
        if self.classes.get(name) is type(value):
            unsaved = _UNSAVED.get(name, set())
            fitted = {k: v for k, v in vars(value).items()
                      if _FITTED_NAME.match(k) and k not in unsaved}
            return {"__estimator__": name, "params": self.encode(value.get_params(deep=False)),
                    "fitted": self.encode(fitted)}
        raise ValueError(f"cannot save a {name} in a divpred model file (supported: "
                         f"{', '.join(SAVED_CLASSES)})")


# ----------------------------------------------------------------------------- load
def load_model(path) -> tuple[dict, dict]:
    """Read and check a model file: (description, {"estimator": ..., "encoder": ...}).

    Raises
    ------
    ValueError
        The file is missing, damaged, of another format or schema version, or describes an
        inconsistent model.
    """
    p = Path(path)
    if p.is_file():
        with open(p, "rb") as fh:
            if fh.read(len(_OLD_MAGIC)) == _OLD_MAGIC:
                raise ValueError(
                    f"{p} is a model file of an older divpred (format 1, which stored a pickle "
                    "and is no longer loaded, because loading it could run code); refit the "
                    "model with 'divpred fit'"
                )
    arrays = _io.read_npz(p, "model file")
    text = arrays.pop(_DESCRIPTION, None)
    if text is None or text.shape != () or text.dtype.kind != "U":
        raise ValueError(f"{p} is not a divpred model file (no model description); create "
                         "one with 'divpred fit'")
    try:
        description = json.loads(str(text))
    except ValueError:
        raise ValueError(f"{p} is a damaged divpred model file (its description is not "
                         "JSON)") from None
    _check_header(p, description)
    reader = _Reader(arrays, _classes())
    try:
        estimator = reader.decode(description["estimator"])
        encoder = reader.decode(description["encoder"])
        if set(arrays) != reader.used:
            raise _Invalid("it holds arrays that its description does not use")
        _check_model(description, estimator, encoder)
    except (_Invalid, KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        reason = str(exc) if isinstance(exc, _Invalid) else f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{p} is a damaged or foreign divpred model file: {reason}; refit "
                         "the model with 'divpred fit'") from None
    return description, {"estimator": estimator, "encoder": encoder}


def _check_header(p: Path, d) -> None:
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"{p} is not a divpred model file; create one with 'divpred fit'")
    version = d.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{p} is a damaged divpred model file (no schema version)")
    if version > SCHEMA_VERSION:
        raise ValueError(f"{p} was written by a newer divpred (model schema version {version}; "
                         f"this one reads version {SCHEMA_VERSION}): upgrade divpred or refit "
                         "the model with this one")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{p} uses model schema version {version}; this divpred reads version "
                         f"{SCHEMA_VERSION}: refit the model with 'divpred fit'")
    kind = d.get("kind")
    if kind not in KIND_CLASSES:
        raise ValueError(f"{p} holds a model of unknown kind {kind!r} (known: "
                         f"{', '.join(KIND_CLASSES)})")


class _Reader:
    def __init__(self, arrays: dict[str, np.ndarray], classes: dict[str, type]):
        self.arrays = arrays
        self.classes = classes
        self.used: set[str] = set()

    def decode(self, value):
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict) or len(value) not in (1, 2, 3):
            raise _Invalid(f"unexpected value {str(value)[:60]!r}")
        if "__array__" in value:
            name = value["__array__"]
            if name not in self.arrays:
                raise _Invalid(f"array {name!r} is missing")
            self.used.add(name)
            return self.arrays[name]
        if "__float__" in value:
            if value["__float__"] not in ("nan", "inf", "-inf"):
                raise _Invalid(f"bad float {value['__float__']!r}")
            return float(value["__float__"])
        if "__objects__" in value:
            items = [self.decode(v) for v in value["__objects__"]]
            out = np.empty(len(items), dtype=object)
            for i, v in enumerate(items):
                out[i] = v
            return out.reshape(tuple(value["shape"]))
        if "__tuple__" in value:
            return tuple(self.decode(v) for v in value["__tuple__"])
        if "__dict__" in value:
            return {_hashable(self.decode(k)): self.decode(v) for k, v in value["__dict__"]}
        if "__frame__" in value:
            f = value["__frame__"]
            columns = [self.decode(c) for c in f["columns"]]
            data = [self.decode(c) for c in f["data"]]
            index = self.decode(f["index"])
            if len(columns) != len(data) or any(len(c) != len(index) for c in data):
                raise _Invalid("a table's columns do not match its rows")
            frame = pd.DataFrame({j: c for j, c in enumerate(data)}, index=index)
            frame.columns = pd.Index(columns, dtype=object) if columns else frame.columns
            return frame
        if "__estimator__" in value:
            return self._estimator(value)
        raise _Invalid(f"unexpected value {str(value)[:60]!r}")

    def _estimator(self, value: dict):
        name = value["__estimator__"]
        cls = self.classes.get(name)
        if cls is None:
            raise _Invalid(f"objects of class {name!r} are not part of divpred's model format")
        params = self.decode(value["params"])
        fitted = self.decode(value["fitted"])
        if not isinstance(params, dict) or not isinstance(fitted, dict):
            raise _Invalid(f"the {name} is damaged")
        try:
            obj = cls(**params)
        except TypeError:
            raise _Invalid(f"the parameters of the {name} do not match this divpred") from None
        for key, attr in fitted.items():
            if not isinstance(key, str) or not _FITTED_NAME.match(key):
                raise _Invalid(f"the {name} has a bad attribute name {key!r}")
            setattr(obj, key, attr)
        if name in _LINEAR and "coef_" in fitted:
            # every fitted linear model, wherever it is, must be one that can predict
            _check_linear(obj, _array(obj, "classes_", ndim=1).size,
                          _count(obj, "n_features_in_"),
                          binary_single_row=name == "LogisticRegression")
        return obj


def _hashable(key):
    if isinstance(key, list | dict | np.ndarray):
        raise _Invalid("a mapping has an unhashable key")
    return key


# ----------------------------------------------------------------------------- checks
def _check_model(d: dict, est, encoder) -> None:
    """Raise _Invalid unless the decoded objects form a consistent model of ``d``'s kind."""
    if type(est).__name__ != KIND_CLASSES[d["kind"]]:
        raise _Invalid(f"its estimator is a {type(est).__name__}, not a {d['kind']} model")
    classes = _array(est, "classes_", ndim=1)
    n_features = _count(est, "n_features_in_")
    if [json_label(c) for c in classes] != d["classes"] or n_features != d["n_features"]:
        raise _Invalid("its classes or number of features differ from its description")
    if classes.size < 2 or np.unique(classes).size != classes.size:
        raise _Invalid("its classes are not distinct labels")
    if type(est).__name__ == "PurifiedClassifier":
        _check_expert(est.estimator_, classes.size, n_features)
        _array(est, "keep_mask_", ndim=1, kind="b")
    else:
        _check_blocks(est, classes.size, n_features)
    if encoder is not None:
        _check_encoder(encoder, n_features)


def _check_blocks(est, n_classes: int, n_features: int) -> None:
    blocks = _array(est, "blocks_", ndim=1, kind="iu")
    ids = np.unique(blocks[blocks != -1])
    experts = est.experts_
    if not isinstance(experts, list) or len(experts) != ids.size or ids.size != _count(
        est, "n_blocks_"
    ):
        raise _Invalid("its experts do not match its blocks")
    for expert in experts:
        _check_expert(expert, n_classes, n_features)
    if est.dominant_block_ not in ids.tolist():
        raise _Invalid("its dominant block is not one of its blocks")
    routing = est.routing_used_
    if routing not in ("hard", "soft", "dominant", "single"):
        raise _Invalid(f"unknown routing {routing!r}")
    if routing in ("hard", "soft") and est.router_ is None:
        raise _Invalid(f"routing {routing!r} without a router")
    if est.router_ is not None:
        router_classes = _array(est.router_, "classes_", ndim=1)
        _check_linear(est.router_, router_classes.size, n_features, binary_single_row=True)
        if not np.all(np.isin(router_classes, ids)):
            raise _Invalid("its router routes to blocks it does not have")


def _check_expert(expert, n_classes: int, n_features: int) -> None:
    name = type(expert).__name__
    classes = _array(expert, "classes_", ndim=1, kind="iu")
    if classes.size == 0 or classes.min() < 0 or classes.max() >= n_classes:
        raise _Invalid(f"a {name} predicts classes the model does not have")
    if name == "_ConstantExpert":
        if classes.shape != (1,):
            raise _Invalid("a constant expert must have one class")
    elif name in ("MultinomialLogit", "LogisticRegression"):
        _check_linear(expert, classes.size, n_features,
                      binary_single_row=name == "LogisticRegression")
    else:
        raise _Invalid(f"a {name} cannot be an expert")


def _check_linear(model, n_classes: int, n_features: int, *, binary_single_row: bool) -> None:
    rows = 1 if binary_single_row and n_classes == 2 else n_classes
    coef = _array(model, "coef_", ndim=2, kind="f")
    intercept = _array(model, "intercept_", ndim=1, kind="f")
    if coef.shape != (rows, n_features) or intercept.shape != (rows,):
        raise _Invalid(f"a {type(model).__name__} has weights of shape {coef.shape}, expected "
                       f"({rows}, {n_features})")
    if _count(model, "n_features_in_") != n_features:
        raise _Invalid(f"a {type(model).__name__} expects another number of features")
    if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(intercept))):
        raise _Invalid(f"a {type(model).__name__} has non-finite weights")


def _check_encoder(encoder, n_features: int) -> None:
    if type(encoder).__name__ != "TabularEncoder":
        raise _Invalid(f"its encoder is a {type(encoder).__name__}")
    columns, names = encoder.columns_, encoder.feature_names_
    if not isinstance(columns, list) or not isinstance(names, list) or not isinstance(
        encoder.categories_, dict
    ):
        raise _Invalid("its encoder is damaged")
    if len(names) != n_features or _count(encoder, "n_features_in_") != len(columns):
        raise _Invalid("its encoder's columns do not match the model's features")
    if not set(encoder.categories_) <= set(columns) or not set(encoder.numeric_columns_) <= set(
        columns
    ):
        raise _Invalid("its encoder names columns it does not have")


def _array(obj, name: str, *, ndim: int, kind: str | None = None) -> np.ndarray:
    value = getattr(obj, name, None)
    if not isinstance(value, np.ndarray) or value.ndim != ndim or (
        kind is not None and value.dtype.kind not in kind
    ):
        raise _Invalid(f"the {type(obj).__name__}'s {name} is missing or of the wrong type")
    return value


def _count(obj, name: str) -> int:
    value = getattr(obj, name, None)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid(f"the {type(obj).__name__}'s {name} is not a count")
    return value
