"""Atomic file output: write to a temporary file in the target folder, then rename.

A crash or a kill in the middle of a write leaves either the old file or no file, never a
half-written one, because ``os.replace`` is atomic on POSIX within one file system.

:func:`staged_output` extends this to the set of files of one run: they are written into a
hidden staging folder inside the output folder and moved into place together, under an
exclusive lock of the output folder, only when all of them are written. A manifest
(``.divpred-manifest.json``) lists the files of the last complete set; files of an earlier set
that the new one does not contain are removed, so the folder never holds a mix of two runs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions open() would have.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except OSError as exc:
        # The user knows the target, not our hidden temporary file: name the target.
        raise _renamed_error(exc, {tmp_path: target}) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _renamed_error(exc: OSError, names: dict[Path, Path]) -> OSError:
    """``exc`` with a hidden file name mapped through ``names`` (hidden -> shown path).

    A file name outside every hidden path is kept; a missing one becomes the first shown path.
    """
    filename = exc.filename
    if filename is None:
        if not names:
            return exc
        filename = next(iter(names.values()))
    else:
        for hidden, shown in names.items():
            try:
                rel = Path(filename).relative_to(hidden)
            except ValueError:
                continue
            filename = shown / rel
            break
    strerror = exc.strerror or str(exc) or type(exc).__name__
    try:
        new = type(exc)(exc.errno if exc.errno is not None else errno.EIO, strerror,
                        str(filename))
    except TypeError:  # an OSError subclass with another signature
        new = OSError(exc.errno if exc.errno is not None else errno.EIO, strerror,
                      str(filename))
    return new


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` only when closed without error."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, default=_json_default)
        fh.write("\n")


_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed: the bytes of a file depend on its content only


def write_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Write arrays to an ``.npz`` file (readable by ``np.load``), atomically and reproducibly.

    Unlike ``np.savez`` the zip entries carry a fixed date, so the same arrays give the same
    bytes; arrays of Python objects are refused (they would need pickle to be read back).
    """
    with atomic_open(path, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            zf.writestr(info, buffer.getvalue())


class _DamagedNpz(Exception):
    pass


def read_npz(path: str | os.PathLike, what: str = "npz file") -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file without pickle; ValueError for any damage.

    Each entry's declared shape and dtype are checked against its size before an array is
    allocated, arrays of Python objects are refused, and the zip checksums are verified: a
    truncated, byte-flipped or foreign file raises ValueError (naming ``what`` and the path),
    never another exception.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} not found: {p}" if not p.exists()
                         else f"{what} is not a regular file: {p}")
    try:
        with zipfile.ZipFile(p) as zf:
            arrays: dict[str, np.ndarray] = {}
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise _DamagedNpz(f"it has an entry {info.filename!r} that is not an array")
                key = info.filename[: -len(".npy")]
                if key in arrays:
                    raise _DamagedNpz(f"it has two arrays named {key!r}")
                arrays[key] = _parse_npy(zf.read(info), key)
    except _DamagedNpz as exc:
        raise ValueError(f"could not read {what} {p}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse the bytes is a damaged file
        reason = "not a zip archive" if isinstance(exc, zipfile.BadZipFile) else (
            f"{type(exc).__name__}: {exc}")
        raise ValueError(f"could not read {what} {p}: the file is damaged or not an npz file "
                         f"({reason})") from None
    return arrays


def _parse_npy(data: bytes, key: str) -> np.ndarray:
    buffer = io.BytesIO(data)
    version = np.lib.format.read_magic(buffer)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(buffer)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(buffer)
    else:
        raise _DamagedNpz(f"array {key!r} has an unsupported .npy version {version}")
    if dtype.hasobject:
        raise _DamagedNpz(
            f"array {key!r} holds Python objects, which divpred does not load (reading them "
            "would run pickle); save it with a numeric or text dtype"
        )
    count = math.prod(shape)
    offset = buffer.tell()
    if count * dtype.itemsize != len(data) - offset:
        raise _DamagedNpz(f"array {key!r} is truncated or damaged (its size does not match "
                          f"its shape {shape})")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
    return arr.copy()


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write one array to an ``.npy`` file, atomically."""
    with atomic_open(path, "wb") as fh:
        np.save(fh, array)


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as CSV without its index, atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, index=False)


def save_figure(path: str | os.PathLike, fig, **kwargs: Any) -> None:
    """Save a matplotlib figure, atomically (the format is taken from the suffix of ``path``)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=fmt, **kwargs)


# --------------------------------------------------------------------- staged output folders
MANIFEST = ".divpred-manifest.json"
_STAGE_PREFIX = ".divpred-stage-"


def check_output_dir(out_dir: str | os.PathLike, option: str = "--out") -> Path:
    """Check that ``out_dir`` is, or can be created as, a writable folder; nothing is created.

    Raises
    ------
    ValueError
        ``out_dir`` (or a parent) exists and is not a folder, or cannot be written.
    """
    out = Path(out_dir)
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe != out and not probe.is_dir():
        raise ValueError(f"cannot create {option} {out}: {probe} is not a folder")
    if probe == out and not out.is_dir():
        raise ValueError(f"{option} exists and is not a directory: {out}")
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == out else f" (in {probe})"
        raise ValueError(f"cannot write {option} {out}{where}: permission denied")
    return out


@contextlib.contextmanager
def staged_output(
    out_dir: str | os.PathLike,
    *,
    set_name: str = "output",
    keep_previous: bool = False,
    before_commit: Callable[[Path, Path], None] | None = None,
    option: str = "--out",
) -> Iterator[Path]:
    """Yield a staging folder whose files replace the set ``set_name`` of ``out_dir`` as a whole.

    Write every output file of the run into the yielded folder. When the block ends without
    an error, under an exclusive lock of ``out_dir`` (so that concurrent runs commit one after
    the other): ``before_commit(stage, out_dir)`` runs (e.g. to merge a summary with the one
    in ``out_dir``), every staged file is moved into ``out_dir`` (``os.replace``: atomic per
    file), files of the previous ``set_name`` set that are not staged now are removed (unless
    ``keep_previous``) and the manifest is rewritten. Sets of other names (another command's
    outputs in the same folder) are left alone. On an error nothing in ``out_dir`` changes,
    and ``out_dir`` itself is removed again if this call created it.

    ``out_dir`` is checked for writability (:func:`check_output_dir`) before anything else, so
    that a run fails before its computation rather than after it. ``OSError``'s raised for a
    staged file name the file's final path in ``out_dir``.
    """
    out = check_output_dir(out_dir, option)
    created = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _renamed_error(exc, {}) from None
    _remove_stale_stages(out)
    stage = Path(tempfile.mkdtemp(prefix=f"{_STAGE_PREFIX}{os.getpid()}-", dir=out))
    try:
        try:
            yield stage
            with _locked(out):
                if before_commit is not None:
                    before_commit(stage, out)
                _commit(stage, out, set_name, keep_previous)
        except OSError as exc:
            raise _renamed_error(exc, {stage: out}) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in created:
            try:
                folder.rmdir()  # only if empty: a concurrent run may be using it
            except OSError:
                break
        raise
    shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: commits are still atomic per file
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_manifest(out_dir: str | os.PathLike, set_name: str | None = None) -> dict[str, str]:
    """``{relative path: sha256}`` of the complete set ``set_name`` in ``out_dir`` (all sets by
    default), or {} when there is none."""
    sets = _read_sets(Path(out_dir))
    if set_name is not None:
        return dict(sets.get(set_name, {}))
    return {rel: digest for files in sets.values() for rel, digest in files.items()}


def _read_sets(out: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        sets = data["sets"]
        return {str(name): {str(k): str(v) for k, v in files.items()}
                for name, files in sets.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # no manifest, or one we cannot trust: remove nothing


def _commit(stage: Path, out: Path, set_name: str, keep_previous: bool) -> None:
    sets = _read_sets(out)
    previous = sets.get(set_name, {})
    staged = sorted(p for p in stage.rglob("*") if p.is_file())
    files: dict[str, str] = dict(previous) if keep_previous else {}
    for src in staged:
        files[src.relative_to(stage).as_posix()] = _sha256(src)
    for src in staged:
        dst = out / src.relative_to(stage)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    others = {name: {rel: d for rel, d in fs.items() if rel not in files}
              for name, fs in sets.items() if name != set_name}
    for rel in previous:
        if rel not in files and not any(rel in fs for fs in others.values()):
            with contextlib.suppress(FileNotFoundError):
                (out / rel).unlink()
    sets = {name: fs for name, fs in others.items() if fs}
    sets[set_name] = dict(sorted(files.items()))
    write_json(out / MANIFEST, {"format": "divpred-output", "sets": dict(sorted(sets.items()))})


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _remove_stale_stages(out: Path) -> None:
    """Remove staging folders left in ``out`` by runs that were killed (their process is gone)."""
    for stage in out.glob(f"{_STAGE_PREFIX}*"):
        pid = stage.name[len(_STAGE_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(stage, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
