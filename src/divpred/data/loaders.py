"""Loaders for tabular CSV, ``.npz`` arrays, IDX (MNIST/EMNIST) files and scikit-learn digits.

Every loader returns a :class:`Dataset` with a float64 feature matrix of shape (n, d) and a 1-d
label array, and raises :class:`ValueError` with an actionable message for missing, empty or
malformed input.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from divpred._io import read_npz
from divpred._validation import check_features, check_labels
from divpred.data.synthetic import SDData

PathLike = str | os.PathLike

IDX_IMAGES_MAGIC = 0x00000803
"""Magic number of an IDX file of unsigned bytes with 3 dimensions (n, rows, cols)."""

IDX_LABELS_MAGIC = 0x00000801
"""Magic number of an IDX file of unsigned bytes with 1 dimension (n,)."""

_MAX_SHOWN = 10


def _shown(values) -> str:
    values = list(values)
    text = ", ".join(repr(v) for v in values[:_MAX_SHOWN])
    return text + (f", ... ({len(values)} in all)" if len(values) > _MAX_SHOWN else "")


@dataclass
class Dataset:
    """Features and labels loaded from one source.

    Attributes
    ----------
    X : ndarray of float64, shape (n, d)
    y : ndarray, shape (n,)
    feature_names : list of str, length d
    encoder : TabularEncoder or None
        The encoder that produced ``X`` from a table (reuse it for matching test files).
    label : str or None
        Name of the label column of a table.
    path : pathlib.Path or None
        File the data came from.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    encoder: TabularEncoder | None = None
    label: str | None = None
    path: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
        series.dtype
    )


def _sorted_categories(values) -> list:
    try:
        return sorted(values)
    except TypeError:  # mixed types: order by type name, then text
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


class TabularEncoder(TransformerMixin, BaseEstimator):
    """Turn a table of features into a float64 matrix: numbers pass, categories are one-hot.

    Numeric columns (int, float) are copied as float64. Other columns (object, string,
    category, bool) are one-hot encoded with the categories seen by :meth:`fit`, in sorted
    order, named ``"{column}_{category}"``. Missing values are rejected.

    Attributes
    ----------
    columns_ : list
        Input columns, in fit order.
    numeric_columns_ : list
        Columns passed through as numbers.
    categories_ : dict column -> list
        Sorted categories of each one-hot encoded column.
    feature_names_ : list of str
        Names of the output columns.
    n_features_in_ : int
    """

    def fit(self, X, y=None) -> TabularEncoder:
        """Learn column kinds and categories.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n, p)
        y : ignored

        Returns
        -------
        self
        """
        frame = self._as_frame(X)
        if frame.shape[0] == 0:
            raise ValueError("cannot fit TabularEncoder on a table with no rows")
        if frame.shape[1] == 0:
            raise ValueError("cannot fit TabularEncoder on a table with no feature columns")
        if not frame.columns.is_unique:
            dup = frame.columns[frame.columns.duplicated()].tolist()
            raise ValueError(f"duplicate column names: {dup}")
        self._check_missing(frame)
        for c in frame.columns:
            if not _is_numeric(frame[c]):
                _check_stray_text(frame[c], c)
        self.columns_ = list(frame.columns)
        self.numeric_columns_ = [c for c in frame.columns if _is_numeric(frame[c])]
        self.categories_ = {
            c: _sorted_categories(pd.unique(frame[c].to_numpy(dtype=object)).tolist())
            for c in frame.columns
            if c not in self.numeric_columns_
        }
        names: list[str] = []
        for c in self.columns_:
            if c in self.categories_:
                names.extend(f"{c}_{v}" for v in self.categories_[c])
            else:
                names.append(str(c))
        self.feature_names_ = names
        self.n_features_in_ = len(self.columns_)
        return self

    def transform(self, X) -> np.ndarray:
        """Encode a table with the columns and categories learned by :meth:`fit`.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (m, p)
            Same columns as at fit time (any order).

        Returns
        -------
        ndarray of float64, shape (m, len(feature_names_))
        """
        if not hasattr(self, "feature_names_"):
            raise ValueError("this TabularEncoder is not fitted yet; call fit first")
        frame = self._as_frame(X)
        missing = [c for c in self.columns_ if c not in frame.columns]
        extra = [c for c in frame.columns if c not in self.columns_]
        if missing or extra:
            raise ValueError(
                f"columns differ from those seen at fit: missing {missing}, unexpected {extra}"
            )
        self._check_missing(frame)
        blocks = []
        for c in self.columns_:
            col = frame[c]
            if c in self.categories_:
                cats = self.categories_[c]
                values = col.to_numpy(dtype=object)
                codes = pd.Index(cats, dtype=object).get_indexer(values)
                if np.any(codes < 0):
                    unseen = _sorted_categories(pd.unique(values[codes < 0]).tolist())
                    raise ValueError(
                        f"column {c!r} has categories not seen at fit: {_shown(unseen)}; "
                        f"known categories are {_shown(cats)}"
                    )
                block = np.zeros((len(values), len(cats)), dtype=np.float64)
                block[np.arange(len(values)), codes] = 1.0
            else:
                if not _is_numeric(col):
                    rows = _text_rows(col)
                    where = (f": {col.iloc[rows[0]]!r} in {_row(rows[0])}" if rows.size
                             else f" (dtype {col.dtype})")
                    raise ValueError(f"column {c!r} was numeric at fit but is not now{where}")
                block = col.to_numpy(dtype=np.float64).reshape(-1, 1)
                if not np.all(np.isfinite(block)):
                    raise ValueError(f"column {c!r} contains infinite values")
            blocks.append(block)
        if not blocks:
            return np.zeros((frame.shape[0], 0))
        return np.ascontiguousarray(np.hstack(blocks))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Output column names, as an array of str."""
        if not hasattr(self, "feature_names_"):
            raise ValueError("this TabularEncoder is not fitted yet; call fit first")
        return np.asarray(self.feature_names_, dtype=object)

    @staticmethod
    def _as_frame(X) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            return X
        arr = np.asarray(X, dtype=object) if not isinstance(X, np.ndarray) else X
        if arr.ndim != 2:
            raise ValueError(f"X must be a table of shape (n_samples, n_columns); got {arr.shape}")
        return pd.DataFrame(arr)

    @staticmethod
    def _check_missing(frame: pd.DataFrame) -> None:
        counts = frame.isna().sum()
        bad = counts[counts > 0]
        if len(bad):
            detail = ", ".join(f"{c!r}: {int(k)}" for c, k in bad.items())
            raise ValueError(f"missing values (NaN) in feature column(s) {detail}; impute or drop")


STRAY_TEXT_SHARE = 0.1
"""A column whose values are numbers except at most this share is taken as numeric with stray
text (an error), not as categories."""


def _text_rows(col: pd.Series) -> np.ndarray:
    """Positions of the values of ``col`` that are not numbers."""
    if pd.api.types.is_bool_dtype(col.dtype):
        return np.arange(len(col))
    numbers = pd.to_numeric(col, errors="coerce")
    return np.flatnonzero(numbers.isna().to_numpy() & col.notna().to_numpy())


def _row(pos: int) -> str:
    return f"data row {pos + 1} (line {pos + 2} of a CSV file with a header)"


def _check_stray_text(col: pd.Series, name) -> None:
    """ValueError when a text column is numbers but for a few values (a typo, not categories)."""
    if pd.api.types.is_bool_dtype(col.dtype) or isinstance(col.dtype, pd.CategoricalDtype):
        return
    rows = _text_rows(col)
    if 0 < rows.size <= STRAY_TEXT_SHARE * len(col):
        shown = ", ".join(f"{col.iloc[r]!r} in {_row(r)}" for r in rows[:3])
        more = f" and {rows.size - 3} more" if rows.size > 3 else ""
        raise ValueError(
            f"column {name!r} holds numbers except {rows.size} value(s): {shown}{more}; fix or "
            "remove them (a numeric column with stray text would be one-hot encoded as "
            f"{pd.unique(col.to_numpy(dtype=object)).size} categories)"
        )


def _existing_file(path: PathLike, what: str = "file") -> Path:
    try:
        p = Path(path)
    except TypeError:
        raise ValueError(f"path must be a str or os.PathLike; got {type(path).__name__}") from None
    if not p.exists():
        raise ValueError(f"{what} not found: {p}")
    if not p.is_file():
        raise ValueError(f"{what} is not a regular file: {p}")
    return p


def _read_table(path: PathLike) -> tuple[pd.DataFrame, Path]:
    p = _existing_file(path, "CSV file")
    try:
        frame = pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise ValueError(f"CSV file is empty: {p}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise ValueError(f"could not read CSV file {p}: {exc}") from None
    if frame.shape[0] == 0:
        raise ValueError(f"CSV file has a header but no data rows: {p}")
    return frame, p


def load_csv(path: PathLike, label: str, *, encoder: TabularEncoder | None = None) -> Dataset:
    """Load a CSV table: column ``label`` is ``y``, the others are encoded into ``X``.

    Parameters
    ----------
    path : str or os.PathLike
        CSV file with a header row (compressed ``.csv.gz`` also works).
    label : str
        Name of the label column.
    encoder : TabularEncoder, optional
        A fitted encoder (e.g. ``train.encoder``) to encode a test file consistently; a new one
        is fitted when omitted.

    Returns
    -------
    Dataset
        ``X`` float64 of shape (n, d), ``y`` of shape (n,).
    """
    frame, p = _read_table(path)
    if label not in frame.columns:
        raise ValueError(
            f"label column {label!r} not in {p.name}; available columns: {list(frame.columns)}"
        )
    y = check_labels(frame[label].to_numpy(), name=f"label column {label!r}")
    features = frame.drop(columns=[label])
    if features.shape[1] == 0:
        raise ValueError(f"{p.name} has no feature columns besides the label {label!r}")
    if encoder is None:
        encoder = TabularEncoder().fit(features)
    elif not isinstance(encoder, TabularEncoder):
        raise ValueError(f"encoder must be a TabularEncoder; got {type(encoder).__name__}")
    X = encoder.transform(features)
    return Dataset(X, y, list(encoder.feature_names_), encoder, label, p)


def load_sd_csv(path: PathLike, *, source=None, distributions=()) -> SDData:
    """Load a CSV in the paper's SD layout (``Q0..Q9`` letters, ``Q10`` label) as SDData.

    Unlike :func:`load_csv`, the one-hot columns follow :data:`~divpred.data.SD_FEATURE_NAMES`,
    the layout of :func:`~divpred.data.make_sd`.

    Parameters
    ----------
    path : str or os.PathLike
    source : array-like of int, shape (n,), optional
        Block of each row (see :data:`~divpred.data.PAPER_SD_FILES`); -1 when omitted.
    distributions : sequence of SDDistribution, optional
        The rule of each block, stored in ``SDData.distributions``.

    Returns
    -------
    SDData
    """
    frame, _ = _read_table(path)
    return SDData.from_frame(frame, source=source, distributions=distributions)


def _flatten_images(X: np.ndarray, name: str) -> np.ndarray:
    if X.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (n, ...); got shape {X.shape}")
    if X.ndim > 2:
        X = X.reshape(X.shape[0], -1)
    if X.dtype == np.uint8:
        return np.ascontiguousarray(X, dtype=np.float64) / 255.0
    return check_features(X, name=name)


def load_npz(path: PathLike, *, part: Literal["train", "test"] = "train") -> Dataset:
    """Load arrays from an ``.npz`` file.

    Keys ``X``/``y`` are used when present, otherwise ``X_train``/``y_train`` (``part="train"``)
    or ``X_test``/``y_test`` (``part="test"``). Images of shape (n, h, w, ...) are flattened to
    (n, h*w*...); uint8 values are scaled to [0, 1].

    Parameters
    ----------
    path : str or os.PathLike
    part : {"train", "test"}, default="train"

    Returns
    -------
    Dataset
        ``X`` float64 of shape (n, d), ``y`` of shape (n,).
    """
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test'; got {part!r}")
    p = _existing_file(path, "npz file")
    arrays = read_npz(p, "npz file")  # no pickle, and messages about the user's file
    keys = sorted(arrays)
    if "X" in arrays and "y" in arrays and part == "train":
        xk, yk = "X", "y"
    elif f"X_{part}" in arrays and f"y_{part}" in arrays:
        xk, yk = f"X_{part}", f"y_{part}"
    else:
        raise ValueError(
            f"{p.name} has no {part} arrays: expected keys 'X' and 'y' or "
            f"'X_{part}' and 'y_{part}'; found {keys}"
        )
    X_raw, y_raw = arrays[xk], arrays[yk]
    if X_raw.size == 0 or X_raw.shape[0] == 0:
        raise ValueError(f"{p.name}: array {xk!r} is empty (shape {X_raw.shape}); keys: {keys}")
    X = _flatten_images(X_raw, f"{p.name}[{xk!r}]")
    y = check_labels(y_raw, X.shape[0], name=f"{p.name}[{yk!r}]")
    names = [f"x{i}" for i in range(X.shape[1])]
    return Dataset(X, y, names, None, None, p, {"keys": keys, "shape": X_raw.shape})


def _read_idx(path: PathLike, magic: int, what: str) -> np.ndarray:
    p = _existing_file(path, f"IDX {what} file")
    try:
        with open(p, "rb") as fh:
            data = fh.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"could not read IDX {what} file {p}: {exc}") from None
    if len(data) < 4:
        raise ValueError(f"IDX {what} file {p} is too short ({len(data)} bytes) for a header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(
            f"{p.name} is not an IDX {what} file: magic number 0x{found:08X}, expected "
            f"0x{magic:08X}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"IDX {what} file {p} is truncated inside its header")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise ValueError(
            f"IDX {what} file {p} has {len(data)} bytes; its header (dims {dims}) implies "
            f"{expected}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_idx(images_path: PathLike, labels_path: PathLike, *, transpose: bool = False) -> Dataset:
    """Load MNIST/EMNIST images and labels in IDX format (optionally gzip-compressed).

    Parameters
    ----------
    images_path : str or os.PathLike
        IDX file with magic 0x00000803 and big-endian dims (n, rows, cols).
    labels_path : str or os.PathLike
        IDX file with magic 0x00000801 and dim (n,).
    transpose : bool, default=False
        Transpose each image before flattening (EMNIST stores images transposed).

    Returns
    -------
    Dataset
        ``X`` float64 of shape (n, rows*cols) in [0, 1], ``y`` int64 of shape (n,).
    """
    images = _read_idx(images_path, IDX_IMAGES_MAGIC, "images")
    labels = _read_idx(labels_path, IDX_LABELS_MAGIC, "labels")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"IDX files disagree: {images.shape[0]} images but {labels.shape[0]} labels"
        )
    if images.shape[0] == 0:
        raise ValueError(f"IDX images file {images_path} holds no images")
    if transpose:
        images = images.transpose(0, 2, 1)
    X = images.reshape(images.shape[0], -1).astype(np.float64) / 255.0
    names = [f"x{i}" for i in range(X.shape[1])]
    return Dataset(
        X,
        labels.astype(np.int64),
        names,
        None,
        None,
        Path(images_path),
        {"image_shape": images.shape[1:], "labels_path": Path(labels_path)},
    )


def _idx_labels_path(images: Path) -> Path:
    name = images.name.replace("images", "labels").replace("idx3", "idx1")
    return images.with_name(name)


_SUPPORTED = ".csv, .csv.gz, .npz, .idx / *-ubyte (optionally .gz)"


def load_dataset(path: PathLike, label: str | PathLike | None = None) -> Dataset:
    """Load a file, choosing the loader from its suffix.

    Parameters
    ----------
    path : str or os.PathLike
        ``.csv`` / ``.csv.gz`` -> :func:`load_csv`; ``.npz`` -> :func:`load_npz`; IDX images
        (``.idx``, ``.idx3``, ``*-ubyte``, each optionally ``.gz``) -> :func:`load_idx`.
    label : str or os.PathLike, optional
        For CSV, the label column (required). For IDX, the labels file; by default the images
        file name with ``images`` -> ``labels`` and ``idx3`` -> ``idx1``. Unused for npz.

    Returns
    -------
    Dataset
    """
    p = Path(path)
    name = p.name.lower()
    base = name[:-3] if name.endswith(".gz") else name
    if base.endswith(".csv"):
        if label is None:
            frame, _ = _read_table(p)
            raise ValueError(
                f"label= is required for CSV files; columns of {p.name}: {list(frame.columns)}"
            )
        return load_csv(p, str(label))
    if base.endswith(".npz") and base == name:
        return load_npz(p)
    if base.endswith("-ubyte") or Path(base).suffix in (".idx", ".idx3", ".idx1"):
        labels = Path(label) if label is not None else _idx_labels_path(p)
        if label is None and labels == p:
            raise ValueError(
                f"cannot guess the labels file of {p.name}; pass label=<labels IDX file>"
            )
        if label is None and not labels.exists():
            raise ValueError(
                f"labels file {labels.name} (guessed from {p.name}) not found; pass "
                "label=<labels IDX file>"
            )
        return load_idx(p, labels)
    raise ValueError(f"unsupported file type {p.name!r}; supported: {_SUPPORTED}")


def _digits():
    from sklearn.datasets import load_digits

    return load_digits()


def load_digits_all() -> Dataset:
    """All 1797 scikit-learn 8x8 digits (bundled, no download).

    Returns
    -------
    Dataset
        ``X`` float64 of shape (1797, 64) in [0, 1] (pixel / 16), ``y`` int64 in 0..9.
    """
    bunch = _digits()
    return Dataset(
        bunch.data.astype(np.float64) / 16.0,
        bunch.target.astype(np.int64),
        list(bunch.feature_names),
    )


def load_digits_pair(a: int = 4, b: int = 8) -> Dataset:
    """The scikit-learn digits of two classes, e.g. the paper's 4-vs-8 task.

    Parameters
    ----------
    a, b : int in 0..9, distinct

    Returns
    -------
    Dataset
        ``X`` float64 of shape (n, 64) in [0, 1], ``y`` int64 with values ``a`` and ``b``.
    """
    for name, v in (("a", a), ("b", b)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 0 <= v <= 9:
            raise ValueError(f"{name} must be a digit 0..9; got {v!r}")
    if a == b:
        raise ValueError(f"a and b must be different digits; got {a} twice")
    full = load_digits_all()
    keep = np.isin(full.y, [a, b])
    return Dataset(full.X[keep], full.y[keep], full.feature_names)


def load_paper_emnist(path: PathLike) -> Dataset:
    """Load the paper's EMNIST 4/8 file (``Image_train_30error.npz`` or ``Image_test.npz``).

    Both files keep their 600 images under ``X_train`` (uint8, 28x28) and ``y_train``; their
    ``X_test`` is empty.

    Returns
    -------
    Dataset
        ``X`` float64 of shape (600, 784) in [0, 1], ``y`` int64 (digits 4 and 8).
    """
    data = load_npz(path, part="train")
    if data.X.shape[1] != 28 * 28:
        raise ValueError(
            f"{Path(path).name} does not hold 28x28 images: X has shape {data.extra.get('shape')}"
        )
    if data.y.dtype.kind not in "iu":
        raise ValueError(f"{Path(path).name}: labels must be integers; got dtype {data.y.dtype}")
    data.y = data.y.astype(np.int64)
    return data
