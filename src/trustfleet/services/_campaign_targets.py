"""Which devices a new campaign targets: up to date, left out (with the reason), or in a wave.

The decision per device is pure (:func:`~trustfleet.ota.campaign_rules.classify_target`);
this module gathers what the store knows (firmware, earlier refusals, the release's
``min_version``) and builds the campaign's device rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.ota.campaign_rules import EXCLUDING_CODES, Target, classify_target, plan_waves
from trustfleet.ota.versions import check_model, parse_version
from trustfleet.store import NewCampaignDevice, Transaction

__all__ = ["MAX_TARGET_DEVICES", "classify", "plan", "resolve_model", "rows", "targets"]

MAX_TARGET_DEVICES: Final = 1_000_000
"""Most devices one campaign may target."""


def classify(
    tx: Transaction,
    *,
    model: str,
    version: str,
    targets: Mapping[str, str | None],
    history: bool,
) -> tuple[list[str], dict[str, Target], list[str]]:
    """Split targets into up to date, left out (with the reason) and to update.

    With ``history`` (the devices were not listed by the operator), a device that refused an
    earlier campaign because it cannot take updates at all is left out.
    """
    release = tx.releases.get(model=model, version=version)
    min_version = parse_version(release.min_version) if release is not None else (0, 0, 0)
    refusals = tx.campaigns.last_codes(list(targets), codes=EXCLUDING_CODES) if history else {}
    done: list[str] = []
    left_out: dict[str, Target] = {}
    todo: list[str] = []
    for device_id, firmware in sorted(targets.items()):
        decision = classify_target(
            firmware=_version_or_none(firmware),
            version=parse_version(version),
            min_version=min_version,
            refusal=refusals.get(device_id),
        )
        if decision.action == "up_to_date":
            done.append(device_id)
        elif decision.action == "exclude":
            left_out[device_id] = decision
        else:
            todo.append(device_id)
    return done, left_out, todo


def rows(
    *,
    done: Sequence[str],
    left_out: Mapping[str, Target],
    todo: Sequence[str],
    cumulative: Sequence[int],
) -> list[NewCampaignDevice]:
    rows = [NewCampaignDevice(d, 0, "up_to_date") for d in done]
    rows += [
        NewCampaignDevice(d, 0, "refused", reason=t.reason, code=t.code)
        for d, t in sorted(left_out.items())
    ]
    start = 0
    for wave, end in enumerate(cumulative, start=1):
        rows += [NewCampaignDevice(d, wave) for d in todo[start:end]]
        start = end
    return rows


def plan(count: int, waves: Sequence[float]) -> tuple[int, ...]:
    return plan_waves(count, waves) if count else tuple(0 for _ in waves)


def _version_or_none(firmware: str | None) -> tuple[int, int, int] | None:
    if not firmware:
        return None
    try:
        return parse_version(firmware)
    except InvalidInput:
        return None


def resolve_model(
    tx: Transaction, *, version: str, model: str | None, devices: Sequence[str] | None
) -> str:
    if model is None and devices:
        models = {m for m, _state, _fw in tx.campaigns.target_facts(devices[:1]).values()}
        model = next(iter(models), None)
    if model is None:
        models = {r.model for r in tx.releases.list(limit=1000) if r.version == version}
        if not models:
            raise NotFound(
                f"no published release {version}",
                hint="build and publish it first with 'trustfleet release build' and "
                "'trustfleet release publish' (see 'trustfleet release list')",
                code="campaign.release",
            )
        if len(models) != 1:
            raise InvalidInput(
                f"{len(models)} models have a release {version}",
                hint="name the model with --model",
                code="campaign.model",
            )
        model = models.pop()
    check_model(model)
    if tx.releases.get(model=model, version=version) is None:
        raise NotFound(
            f"no release {version} of model {model}",
            hint="publish it first with 'trustfleet release publish'",
            code="campaign.release",
        )
    return model


def targets(tx: Transaction, *, model: str, devices: Sequence[str] | None) -> dict[str, str | None]:
    if devices is None:
        return tx.campaigns.enrolled_devices(model, limit=MAX_TARGET_DEVICES)
    wanted = list(dict.fromkeys(devices))
    if not wanted or len(wanted) > MAX_TARGET_DEVICES:
        raise InvalidInput("list 1 or more devices", code="campaign.devices")
    facts = tx.campaigns.target_facts(wanted)
    for device_id in wanted:
        if device_id not in facts:
            raise NotFound(
                f"device {device_id[:64]!r} not found",
                hint="see the devices with 'trustfleet device list'",
                code="campaign.device",
            )
        their_model, state, _fw = facts[device_id]
        if their_model != model or state != "enrolled":
            raise InvalidInput(
                f"device {device_id} is a {their_model} in state {state}",
                hint=f"list only enrolled {model} devices",
                code="campaign.device",
            )
    return {d: facts[d][2] for d in wanted}
