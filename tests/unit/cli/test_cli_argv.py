"""Boolean flags given a value, and help text without RST markup (issue 9 section 7)."""

from __future__ import annotations

import pytest
import typer

from trustfleet.cli._argv import normalise_flags, plain_text
from trustfleet.cli.main import app
from trustfleet.errors import InvalidInput

ROOT = typer.main.get_command(app)

FLAG_CASES = {
    "json-true": ("device list --json true", "device list --json"),
    "json-equals-yes": ("device list --json=yes", "device list --json"),
    "json-false-dropped": ("device list --json false", "device list"),
    "json-equals-0-dropped": ("device list --json=0", "device list"),
    "json-alone-kept": ("device list --json", "device list --json"),
    "next-word-not-a-bool": ("device show --json dev-1", "device show --json dev-1"),
    "once-true": ("agent run --once TRUE", "agent run --once"),
    "value-option-untouched": ("device list --limit 1", "device list --limit 1"),
    "after-double-dash-untouched": ("device show -- --json true", "device show -- --json true"),
    "version-true": ("--version true", "--version"),
}


@pytest.mark.parametrize("case", list(FLAG_CASES.values()), ids=list(FLAG_CASES))
def test_boolean_flags_take_true_or_false(case: tuple[str, str]) -> None:
    given, parsed = case
    assert normalise_flags(ROOT, given.split()) == parsed.split()


def test_a_flag_with_another_value_is_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        normalise_flags(ROOT, ["device", "list", "--json=maybe"])
    assert "--json=false" in (info.value.hint or "")


TEXT_CASES = {
    "literal": ("Runs ``trustfleet-agent run`` again.", "Runs 'trustfleet-agent run' again."),
    "role": ("See :func:`trustfleet.ota.plan_waves`.", "See plan_waves."),
    "role-tilde": ("See :class:`~trustfleet.errors.Config`.", "See Config."),
    "py-role": ("See :py:func:`x.y`.", "See y."),
    "paragraph-joined": ("One line\nwraps here.\n\nSecond.", "One line wraps here.\n\nSecond."),
    "none": (None, None),
}


@pytest.mark.parametrize("case", list(TEXT_CASES.values()), ids=list(TEXT_CASES))
def test_help_is_plain_text(case: tuple[str | None, str | None]) -> None:
    given, wanted = case
    assert plain_text(given) == wanted
