"""Playbooks as data: parsing, validation naming the key, first-match planning."""

from __future__ import annotations

import pytest

from trustfleet.errors import InvalidInput
from trustfleet.monitoring.alerts import continues
from trustfleet.monitoring.playbooks import (
    DEFAULT_PLAYBOOK_TOML,
    MAX_PLAYBOOK_BYTES,
    PlannedAction,
    default_playbook,
    load_playbooks,
)

EXAMPLE = """
[[rule]]
kind = "monitor.volume.*"
min_severity = "high"
actions = [
  { action = "notify", receivers = ["soc"] },
  { action = "quarantine", mode = "auto" },
]

[[rule]]
kind = "monitor.file.changed"
min_severity = "medium"
actions = [{ action = "revoke" }, { action = "reattest", mode = "auto" }]

[[rule]]
kind = "*"
actions = [{ action = "notify" }]
"""


def test_first_matching_rule_decides() -> None:
    book = load_playbooks(EXAMPLE, source="ex.toml")
    assert book.plan("monitor.volume.high", "critical") == (
        PlannedAction("notify", "auto", ("soc",)),
        PlannedAction("quarantine", "auto"),
    )
    # below the rule's severity: falls through to the catch-all
    assert book.plan("monitor.volume.high", "medium") == (PlannedAction("notify", "auto"),)
    # a prefix glob does not match the bare prefix's sibling
    assert book.plan("monitor.volumes", "critical") == (PlannedAction("notify", "auto"),)
    # revoke defaults to approval
    assert book.plan("monitor.file.changed", "high")[0] == PlannedAction("revoke", "approval")
    assert book.receivers() == {"soc"}


def test_no_rule_no_action() -> None:
    book = load_playbooks('[[rule]]\nkind = "a.b"\nactions = [{action="notify"}]\n', source="x")
    assert book.plan("a.c", "critical") == ()
    assert load_playbooks("", source="empty").plan("a.b", "critical") == ()


def test_default_playbook_acts_on_nothing_alone() -> None:
    book = default_playbook()
    assert book.plan("monitor.anything", "low") == (PlannedAction("notify", "auto"),)
    critical = book.plan("monitor.anything", "critical")
    assert PlannedAction("quarantine", "approval") in critical
    assert all(a.mode == "approval" for a in critical if a.action != "notify")
    assert "quarantine" in DEFAULT_PLAYBOOK_TOML


def test_unknown_receivers_refused_against_settings() -> None:
    book = load_playbooks(EXAMPLE, source="ex.toml")
    book.check_receivers({"soc", "other"})
    with pytest.raises(InvalidInput, match=r"rule\[0\]\.actions\[0\]\.receivers.*'soc'") as exc:
        book.check_receivers({"other"})
    assert exc.value.code == "monitor.playbook.invalid"


BAD = [
    ("not-toml", "[[rule]\n", "(file)"),
    ("top-level-key", 'rules = 1\n', "rules"),
    ("rule-not-array", "rule = 3\n", "rule"),
    ("unknown-rule-key", '[[rule]]\nkind="*"\nfoo=1\nactions=[{action="notify"}]\n', "rule[0].foo"),
    ("no-kind", '[[rule]]\nactions=[{action="notify"}]\n', "rule[0].kind"),
    ("bad-glob", '[[rule]]\nkind="monitor.*.x"\nactions=[{action="notify"}]\n', "rule[0].kind"),
    ("upper-kind", '[[rule]]\nkind="Monitor.X"\nactions=[{action="notify"}]\n', "rule[0].kind"),
    ("bad-severity", '[[rule]]\nkind="*"\nmin_severity="huge"\nactions=[{action="notify"}]\n',
     "rule[0].min_severity"),
    ("no-actions", '[[rule]]\nkind="*"\nactions=[]\n', "rule[0].actions"),
    ("action-not-table", '[[rule]]\nkind="*"\nactions=["notify"]\n', "rule[0].actions[0]"),
    ("unknown-action", '[[rule]]\nkind="*"\nactions=[{action="reboot"}]\n',
     "rule[0].actions[0].action"),
    ("bad-mode", '[[rule]]\nkind="*"\nactions=[{action="revoke", mode="now"}]\n',
     "rule[0].actions[0].mode"),
    ("notify-approval", '[[rule]]\nkind="*"\nactions=[{action="notify", mode="approval"}]\n',
     "rule[0].actions[0].mode"),
    ("receivers-on-revoke", '[[rule]]\nkind="*"\nactions=[{action="revoke", receivers=["a"]}]\n',
     "rule[0].actions[0].receivers"),
    ("receiver-not-string", '[[rule]]\nkind="*"\nactions=[{action="notify", receivers=[1]}]\n',
     "rule[0].actions[0].receivers"),
    ("duplicate-action", '[[rule]]\nkind="*"\nactions=[{action="notify"},{action="notify"}]\n',
     "rule[0].actions"),
    ("unknown-action-key", '[[rule]]\nkind="*"\nactions=[{action="notify", when="x"}]\n',
     "rule[0].actions[0].when"),
    ("too-large", "#" * (MAX_PLAYBOOK_BYTES + 1), "(file)"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "key"), [(t, k) for _, t, k in BAD], ids=[n for n, _, _ in BAD])
def test_bad_playbooks_name_the_key(text: str, key: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        load_playbooks(text, source="bad.toml")
    assert exc.value.code == "monitor.playbook.invalid"
    assert exc.value.message.startswith(f"bad.toml: {key}:"), exc.value.message
    assert exc.value.hint


def test_continues_rule() -> None:
    from datetime import UTC, datetime, timedelta

    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert not continues(None, t, quiet_s=60)
    assert continues(t, t + timedelta(seconds=59), quiet_s=60)
    assert not continues(t, t + timedelta(seconds=60), quiet_s=60)  # quiet for quiet_s: new
    assert continues(t, t - timedelta(seconds=500), quiet_s=60)  # late arrival joins
