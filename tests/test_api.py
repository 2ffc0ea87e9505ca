"""The public API: every advertised name resolves, and optional backends stay optional."""

import importlib.util
import subprocess
import sys

import pytest

import divpred

OPTIONAL = {"DaskPurifier": "dask", "TorchInfluenceModel": "torch", "purify_torch": "torch"}


@pytest.mark.parametrize("name", [*divpred.__all__, *OPTIONAL])
def test_public_name_resolves(name):
    needs = OPTIONAL.get(name)
    if needs and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{needs} not installed")
    assert getattr(divpred, name) is not None


def test_import_does_not_load_matplotlib_or_optional_backends():
    code = (
        "import sys, divpred; "
        "print(any(m in sys.modules for m in ('matplotlib', 'torch', 'dask')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_star_import_needs_no_optional_package():
    assert not set(OPTIONAL) & set(divpred.__all__)
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('dask', 'distributed', 'torch'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from divpred import *\n"
        "print(MultinomialLogit.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "MultinomialLogit"


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError):
        divpred.not_a_name  # noqa: B018
