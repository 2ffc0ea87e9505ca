"""Loaders: CSV + TabularEncoder, npz, IDX, dispatch, digits, the paper's EMNIST files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from divpred.data import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    TabularEncoder,
    load_csv,
    load_dataset,
    load_digits_all,
    load_digits_pair,
    load_idx,
    load_npz,
    load_paper_emnist,
    load_sd_csv,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


TRAIN_CSV = "age,color,flag,label\n30,red,True,a\n40.5,blue,False,b\n25,red,False,a\n"
TEST_CSV = "age,color,flag,label\n50,blue,True,b\n"


# --------------------------------------------------------------------------- TabularEncoder


def test_encoder_numeric_and_one_hot():
    frame = pd.DataFrame(
        {
            "n": [1, 2, 3],
            "c": ["z", "a", "z"],
            "b": [True, False, True],
            "k": pd.Categorical(["u", "v", "u"]),
        }
    )
    enc = TabularEncoder().fit(frame)
    assert enc.numeric_columns_ == ["n"]
    assert enc.categories_ == {"c": ["a", "z"], "b": [False, True], "k": ["u", "v"]}
    assert enc.feature_names_ == ["n", "c_a", "c_z", "b_False", "b_True", "k_u", "k_v"]
    X = enc.transform(frame)
    assert X.dtype == np.float64
    np.testing.assert_array_equal(
        X,
        [[1, 0, 1, 0, 1, 1, 0], [2, 1, 0, 1, 0, 0, 1], [3, 0, 1, 0, 1, 1, 0]],
    )
    np.testing.assert_array_equal(enc.fit_transform(frame), X)
    assert list(enc.get_feature_names_out()) == enc.feature_names_


def test_encoder_column_order_independent():
    frame = pd.DataFrame({"n": [1.5, 2.5], "c": ["x", "y"]})
    enc = TabularEncoder().fit(frame)
    np.testing.assert_array_equal(enc.transform(frame[["c", "n"]]), enc.transform(frame))


def test_encoder_unseen_category_names_column_and_values():
    enc = TabularEncoder().fit(pd.DataFrame({"color": ["red", "blue"], "n": [1, 2]}))
    with pytest.raises(ValueError, match=r"column 'color'.*'green', 'pink'.*known.*'blue'"):
        enc.transform(pd.DataFrame({"color": ["pink", "red", "green"], "n": [1, 2, 3]}))


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (pd.DataFrame({"a": [1.0, np.nan], "b": ["x", "y"]}), "NaN.*'a': 1"),
        (pd.DataFrame({"a": [1.0, 2.0], "b": ["x", None]}), "NaN.*'b': 1"),
        (pd.DataFrame({"a": []}), "no rows"),
        (pd.DataFrame(index=[0, 1]), "no feature columns"),
    ],
)
def test_encoder_fit_errors(frame, match):
    with pytest.raises(ValueError, match=match):
        TabularEncoder().fit(frame)


def test_encoder_transform_errors():
    enc = TabularEncoder().fit(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}))
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        enc.transform(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(ValueError, match=r"unexpected \['c'\]"):
        enc.transform(pd.DataFrame({"a": [1.0], "b": ["x"], "c": [0]}))
    with pytest.raises(ValueError, match="NaN"):
        enc.transform(pd.DataFrame({"a": [np.nan], "b": ["x"]}))
    with pytest.raises(ValueError, match="'a' was numeric"):
        enc.transform(pd.DataFrame({"a": ["one"], "b": ["x"]}))
    with pytest.raises(ValueError, match="infinite"):
        enc.transform(pd.DataFrame({"a": [np.inf], "b": ["x"]}))
    with pytest.raises(ValueError, match="not fitted"):
        TabularEncoder().transform(pd.DataFrame({"a": [1.0]}))


# --------------------------------------------------------------------------- load_csv


def test_load_csv_train_and_consistent_test(tmp_path):
    train = load_csv(write(tmp_path / "train.csv", TRAIN_CSV), "label")
    assert train.X.shape == (3, 5) and train.X.dtype == np.float64
    assert train.feature_names == ["age", "color_blue", "color_red", "flag_False", "flag_True"]
    assert train.y.tolist() == ["a", "b", "a"]
    assert train.label == "label" and train.path == tmp_path / "train.csv"
    np.testing.assert_array_equal(train.X[:, 0], [30, 40.5, 25])
    test = load_csv(write(tmp_path / "test.csv", TEST_CSV), "label", encoder=train.encoder)
    assert test.feature_names == train.feature_names
    # the test file alone has only 'blue', but the columns are those of the train file
    np.testing.assert_array_equal(test.X, [[50, 1, 0, 0, 1]])


def test_load_csv_label_only_column(tmp_path):
    with pytest.raises(ValueError, match="no feature columns"):
        load_csv(write(tmp_path / "y.csv", "label\na\nb\n"), "label")


@pytest.mark.parametrize(
    ("content", "label", "match"),
    [
        ("", "label", "empty"),
        ("a,b,label\n", "label", "no data rows"),
        (
            "a,b,label\n1,2,x\n",
            "target",
            r"'target' not in.*available columns: \['a', 'b', 'label'\]",
        ),
        ("a,label\n1,x\n,y\n", "label", "NaN"),
        ("a,label\n1,x\n2,\n", "label", "missing labels"),
        ('a,label\n1,"x\n', "label", "could not read"),
    ],
)
def test_load_csv_errors(tmp_path, content, label, match):
    path = write(tmp_path / "bad.csv", content)
    with pytest.raises(ValueError, match=match):
        load_csv(path, label)


def test_load_csv_missing_file_and_directory(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_csv(tmp_path / "nope.csv", "y")
    with pytest.raises(ValueError, match="not a regular file"):
        load_csv(tmp_path, "y")


def test_load_csv_unreadable_bytes(tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"a,b\n\xff\xfe\x00\x81,1\n")
    with pytest.raises(ValueError, match="could not read"):
        load_csv(path, "a")


def test_load_csv_encoder_must_be_fitted_encoder(tmp_path):
    path = write(tmp_path / "t.csv", TRAIN_CSV)
    with pytest.raises(ValueError, match="TabularEncoder"):
        load_csv(path, "label", encoder=object())
    with pytest.raises(ValueError, match="not fitted"):
        load_csv(path, "label", encoder=TabularEncoder())


def test_load_csv_unseen_category_in_test_file(tmp_path):
    train = load_csv(write(tmp_path / "train.csv", TRAIN_CSV), "label")
    bad = write(tmp_path / "test.csv", "age,color,flag,label\n1,green,True,a\n")
    with pytest.raises(ValueError, match="'color'.*'green'"):
        load_csv(bad, "label", encoder=train.encoder)


def test_load_csv_paper_file(paper_data):
    data = load_csv(paper_data / "synthetic_train_pure.csv", "Q10")
    assert data.X.shape == (1000, 40)
    np.testing.assert_array_equal(data.X.sum(axis=1), 10.0)
    assert data.feature_names[:4] == ["Q0_B", "Q0_D", "Q0_N", "Q0_R"]  # sorted categories
    sd = load_sd_csv(paper_data / "synthetic_train_pure.csv")
    np.testing.assert_array_equal(sd.y, data.y)
    test = load_csv(paper_data / "synthetic_test_dis1.csv", "Q10", encoder=data.encoder)
    assert test.feature_names == data.feature_names and test.X.shape == (1000, 40)


# --------------------------------------------------------------------------- load_npz


def test_load_npz_plain_keys(tmp_path):
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.savez(tmp_path / "d.npz", X=X, y=np.array([0, 1, 0, 1]))
    data = load_npz(tmp_path / "d.npz")
    assert data.X.dtype == np.float64
    np.testing.assert_array_equal(data.X, X)
    assert data.y.tolist() == [0, 1, 0, 1] and data.feature_names == ["x0", "x1", "x2"]


def test_load_npz_images_uint8_and_parts(tmp_path):
    imgs = np.zeros((3, 2, 2), dtype=np.uint8)
    imgs[0, 0, 1] = 255
    imgs[1, 1, 0] = 51
    test_imgs = np.full((2, 2, 2), 255, dtype=np.uint8)
    np.savez(tmp_path / "i.npz", X_train=imgs, y_train=[1, 2, 3], X_test=test_imgs, y_test=[7, 8])
    train = load_npz(tmp_path / "i.npz")
    assert train.X.shape == (3, 4)
    np.testing.assert_allclose(train.X[0], [0, 1, 0, 0])
    np.testing.assert_allclose(train.X[1], [0, 0, 0.2, 0])
    test = load_npz(tmp_path / "i.npz", part="test")
    np.testing.assert_array_equal(test.X, np.ones((2, 4)))
    assert test.y.tolist() == [7, 8]


@pytest.mark.parametrize(
    ("arrays", "kwargs", "match"),
    [
        ({"A": np.zeros((2, 2))}, {}, r"found \['A'\]"),
        ({"X": np.zeros((2, 2))}, {}, r"found \['X'\]"),
        (
            {
                "X_train": np.ones((2, 2)),
                "y_train": [0, 1],
                "X_test": np.zeros(0),
                "y_test": np.zeros(0),
            },
            {"part": "test"},
            "'X_test' is empty",
        ),
        ({"X": np.zeros((3, 2)), "y": [0, 1]}, {}, "different numbers of rows"),
        ({"X": np.zeros(3), "y": [0, 1, 2]}, {}, "at least 2 dimensions"),
        ({"X": np.array([[1.0, np.nan]]), "y": [0]}, {}, "NaN"),
        ({"X": np.zeros((0, 2)), "y": np.zeros(0)}, {}, "empty"),
        ({"X": np.ones((2, 2)), "y": [0, 1]}, {"part": "validation"}, "part must be"),
    ],
)
def test_load_npz_errors(tmp_path, arrays, kwargs, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load_npz(tmp_path / "bad.npz", **kwargs)


def test_load_npz_not_an_archive(tmp_path):
    path = write(tmp_path / "fake.npz", "not a zip")
    with pytest.raises(ValueError, match="could not read npz"):
        load_npz(path)
    with pytest.raises(ValueError, match="not found"):
        load_npz(tmp_path / "missing.npz")


def test_load_npz_object_arrays_rejected(tmp_path):
    np.savez(tmp_path / "obj.npz", X=np.array([[1, "a"]], dtype=object), y=[0])
    with pytest.raises(ValueError, match="could not read npz"):
        load_npz(tmp_path / "obj.npz")


# --------------------------------------------------------------------------- IDX


def idx_bytes(magic: int, arr: np.ndarray) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


@pytest.fixture
def idx_pair(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    img = tmp_path / "train-images-idx3-ubyte"
    lab = tmp_path / "train-labels-idx1-ubyte"
    img.write_bytes(idx_bytes(IDX_IMAGES_MAGIC, images))
    lab.write_bytes(idx_bytes(IDX_LABELS_MAGIC, labels))
    return img, lab, images, labels


def test_load_idx(idx_pair):
    img, lab, images, labels = idx_pair
    data = load_idx(img, lab)
    assert data.X.shape == (5, 12) and data.X.dtype == np.float64
    np.testing.assert_allclose(data.X, images.reshape(5, -1) / 255.0)
    assert data.y.dtype == np.int64 and data.y.tolist() == labels.tolist()
    transposed = load_idx(img, lab, transpose=True)
    np.testing.assert_allclose(transposed.X, images.transpose(0, 2, 1).reshape(5, -1) / 255.0)


def test_load_idx_gzip(tmp_path, idx_pair):
    img, lab, images, _ = idx_pair
    gz_img, gz_lab = tmp_path / "im.idx3.gz", tmp_path / "lab.idx1.gz"
    gz_img.write_bytes(gzip.compress(img.read_bytes()))
    gz_lab.write_bytes(gzip.compress(lab.read_bytes()))
    np.testing.assert_allclose(load_idx(gz_img, gz_lab).X, images.reshape(5, -1) / 255.0)


def test_load_idx_errors(tmp_path, idx_pair):
    img, lab, images, labels = idx_pair
    with pytest.raises(ValueError, match="magic number 0x00000801, expected 0x00000803"):
        load_idx(lab, lab)
    with pytest.raises(ValueError, match="magic number 0x00000803, expected 0x00000801"):
        load_idx(img, img)
    short = tmp_path / "short"
    short.write_bytes(img.read_bytes()[:-1])
    with pytest.raises(ValueError, match="bytes; its header"):
        load_idx(short, lab)
    few = tmp_path / "few"
    few.write_bytes(idx_bytes(IDX_LABELS_MAGIC, labels[:4]))
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        load_idx(img, few)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="too short"):
        load_idx(tiny, lab)
    trunc_header = tmp_path / "th"
    trunc_header.write_bytes(IDX_IMAGES_MAGIC.to_bytes(4, "big") + b"\x00\x00\x00\x05")
    with pytest.raises(ValueError, match="truncated inside its header"):
        load_idx(trunc_header, lab)
    broken_gz = tmp_path / "broken.gz"
    broken_gz.write_bytes(gzip.compress(img.read_bytes())[:20])
    with pytest.raises(ValueError, match="could not read IDX"):
        load_idx(broken_gz, lab)
    with pytest.raises(ValueError, match="not found"):
        load_idx(tmp_path / "none", lab)


# --------------------------------------------------------------------------- load_dataset


def test_load_dataset_dispatch(tmp_path, idx_pair):
    csv = write(tmp_path / "t.csv", TRAIN_CSV)
    assert load_dataset(csv, "label").X.shape == (3, 5)
    np.savez(tmp_path / "d.npz", X=np.ones((2, 2)), y=[0, 1])
    assert load_dataset(tmp_path / "d.npz").X.shape == (2, 2)
    img, lab, _, labels = idx_pair
    assert load_dataset(img).y.tolist() == labels.tolist()  # labels file guessed from the name
    other = tmp_path / "my.idx"
    other.write_bytes(img.read_bytes())
    assert load_dataset(other, lab).X.shape == (5, 12)
    gz = tmp_path / "t.csv.gz"
    gz.write_bytes(gzip.compress(TRAIN_CSV.encode()))
    assert load_dataset(gz, "label").X.shape == (3, 5)


def test_load_dataset_errors(tmp_path, idx_pair):
    csv = write(tmp_path / "t.csv", TRAIN_CSV)
    with pytest.raises(
        ValueError, match=r"label= is required.*\['age', 'color', 'flag', 'label'\]"
    ):
        load_dataset(csv)
    with pytest.raises(ValueError, match="unsupported file type 'data.parquet'"):
        load_dataset(write(tmp_path / "data.parquet", "x"))
    img, _, _, _ = idx_pair
    lonely = tmp_path / "lonely.idx"
    lonely.write_bytes(img.read_bytes())
    with pytest.raises(ValueError, match="cannot guess the labels file"):
        load_dataset(lonely)
    orphan = tmp_path / "x-images-idx3-ubyte"
    orphan.write_bytes(img.read_bytes())
    with pytest.raises(ValueError, match="x-labels-idx1-ubyte.*not found"):
        load_dataset(orphan)


# --------------------------------------------------------------------------- digits, EMNIST


def test_load_digits():
    full = load_digits_all()
    assert full.X.shape == (1797, 64) and full.X.dtype == np.float64
    assert full.X.min() == 0.0 and full.X.max() == 1.0
    assert set(full.y.tolist()) == set(range(10))
    pair = load_digits_pair()
    assert set(pair.y.tolist()) == {4, 8}
    assert pair.X.shape[0] == int(np.sum(np.isin(full.y, [4, 8])))
    assert pair.X.max() <= 1.0
    assert set(load_digits_pair(0, 1).y.tolist()) == {0, 1}


@pytest.mark.parametrize(
    ("a", "b", "match"), [(4, 4, "different"), (4, 10, "b must"), ("4", 8, "a must")]
)
def test_load_digits_pair_errors(a, b, match):
    with pytest.raises(ValueError, match=match):
        load_digits_pair(a, b)


@pytest.mark.parametrize(
    ("name", "counts"), [("Image_train_30error.npz", [288, 312]), ("Image_test.npz", [300, 300])]
)
def test_load_paper_emnist(paper_data, name, counts):
    data = load_paper_emnist(paper_data / name)
    assert data.X.shape == (600, 784) and data.X.dtype == np.float64
    assert 0.0 <= data.X.min() and data.X.max() == 1.0
    assert data.y.dtype == np.int64
    assert [int(np.sum(data.y == d)) for d in (4, 8)] == counts
    with pytest.raises(ValueError, match="'X_test' is empty"):
        load_npz(paper_data / name, part="test")


def test_load_paper_emnist_rejects_other_shapes(tmp_path):
    np.savez(tmp_path / "small.npz", X_train=np.zeros((3, 8, 8), np.uint8), y_train=[4, 8, 4])
    with pytest.raises(ValueError, match="28x28"):
        load_paper_emnist(tmp_path / "small.npz")
    np.savez(tmp_path / "lab.npz", X_train=np.zeros((2, 28, 28), np.uint8), y_train=["a", "b"])
    with pytest.raises(ValueError, match="integers"):
        load_paper_emnist(tmp_path / "lab.npz")
