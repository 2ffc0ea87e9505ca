"""The mutation list of ``tools/mutate.py`` still applies to the current source.

A refactor that changes a mutated line would otherwise silently drop that mutation from the
run: every pattern must occur exactly once, change something, leave compilable code, and name
test files that exist. (The mutation run itself is ``python tools/mutate.py``; its last result
is in docs/testing.md.)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mutate():
    spec = importlib.util.spec_from_file_location("mutate", ROOT / "tools" / "mutate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_mutation_pattern_matches_the_source_once(mutate):
    assert mutate.check_patterns(ROOT) == []
    assert len(mutate.MUTATIONS) >= 15


def test_pattern_check_catches_a_missing_pattern(mutate, tmp_path, monkeypatch):
    # the control: the check above can fail
    target = tmp_path / "src" / "divpred" / "x.py"
    target.parent.mkdir(parents=True)
    target.write_text("a = 1\na = 1\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("")
    cases = [
        mutate.Mutation("twice", "src/divpred/x.py", "a = 1", "a = 2", ("tests/test_x.py",)),
        mutate.Mutation("absent", "src/divpred/x.py", "b = 1", "b = 2", ("tests/test_x.py",)),
        mutate.Mutation("broken", "src/divpred/x.py", "a = 1\na", "a = (\na", ("tests/test_x.py",)),
        mutate.Mutation("no tests", "src/divpred/x.py", "1\na", "2\na", ("tests/test_y.py",)),
    ]
    monkeypatch.setattr(mutate, "MUTATIONS", tuple(cases))
    problems = mutate.check_patterns(tmp_path)
    assert [p.split(":")[0] for p in problems] == ["twice", "absent", "broken", "no tests"]
