"""The mutation tool makes the mutants it promises (tests/mutation, docs/mutation.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "mutation"))

from mutator import TextRules, mutants  # noqa: E402
from run import load_equivalents, load_targets  # noqa: E402

SAMPLE = '''"""Module docstring: never mutated."""
from typing import Literal

__all__ = ["check"]
Kind = Literal["a", "b"]


def check(x: int, names: list[str], ok: bool = True) -> str:
    """Docstring."""
    if x >= 3 and not ok:
        raise ValueError(f"too big: {x}", hint="smaller")
    for name in names:
        if name in ("a",):
            continue
        _finding("code.x", "a message")
    x += 1
    return "done"
'''

RULES = TextRules(calls={"_finding": (1,)})


def _by_op(source: str = SAMPLE) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for m in mutants(source, RULES):
        found.setdefault(m.operator, []).append(f"{m.original} -> {m.replacement}")
    return found


def test_operators_produce_the_expected_edits() -> None:
    found = _by_op()
    assert found["compare"] == [">= -> >", "in -> not in"]
    assert found["boolop"] == ["and -> or"]
    assert found["not"] == ["not -> "]
    assert "+= -> -=" in found["binop"]
    assert "continue -> break" in found["loop"]
    assert "3 -> 4" in found["number"]
    assert "True -> False" in found["bool"]
    assert 'return "done" -> return None' in found["return"]
    assert any(r.startswith("raise ValueError") for r in found["delete"])


def test_docstrings_annotations_all_and_type_aliases_are_never_mutated() -> None:
    originals = [m.original for m in mutants(SAMPLE, RULES)]
    assert not any("docstring" in o.lower() for o in originals)
    assert not any(o in ('"check"', '"b"', "int", "str", "list[str]") for o in originals)
    # the one '"a"' mutated is the tuple in the loop, not the Literal
    assert sum(1 for o in originals if o == '"a"') == 1


def test_text_only_mutants_carry_their_rule() -> None:
    ruled = {m.original: m.rule for m in mutants(SAMPLE, RULES)}
    assert ruled['f"too big: {x}"'] == "message-text"  # an error's message
    assert ruled['"smaller"'] == "message-text"  # a hint
    assert ruled['"a message"'] == "message-text"  # a text position of _finding
    assert ruled['"code.x"'] is None  # a finding code is behaviour


def test_every_mutant_of_every_target_compiles_and_keys_are_unique() -> None:
    targets, rules = load_targets()
    assert targets
    for target in targets:
        source = (ROOT / target.path).read_text()
        found = mutants(source, rules)
        assert found, target.path
        assert len({m.key for m in found}) == len(found)
        for m in found:
            compile(m.apply(source), target.path, "exec")


def test_every_reviewed_equivalent_names_a_mutant_that_exists() -> None:
    """A stale entry (the code changed under it) must be reviewed again, not kept silently."""
    targets, rules = load_targets()
    keys = {(t.path, m.key) for t in targets for m in mutants((ROOT / t.path).read_text(), rules)}
    for entry, reason in load_equivalents().items():
        assert entry in keys, f"stale equivalent: {entry}"
        assert len(reason) > 20, f"give a reason: {entry}"


@pytest.mark.parametrize("bad", ["def f(:\n", "x = (\n"])
def test_unparseable_source_is_a_syntax_error(bad: str) -> None:
    with pytest.raises(SyntaxError):
        mutants(bad)
