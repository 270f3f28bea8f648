"""Property-based tests of the management API from its own OpenAPI document (schemathesis).

The document is loaded from the real served ``https://…/api/v1/openapi.json`` (trusting the
home's CA bundle); every operation is called with generated requests, with a token of each role:
reads fully, changes with a few examples each (a throwaway home: whatever they change is theirs).
Half the cases use real path parameters (a device, campaign, command, release) so that the
success bodies are checked too, not only 404s. Every response must be no server error and match
the document (status code, content type, schema). Hypothesis is derandomized: a failure
reproduces on the next run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

import pytest
import requests
import schemathesis
from apikit import ApiKit
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import Fleet
from support.api import World, make_world
from trustfleet import rbac
from trustfleet.services import operators

pytestmark = pytest.mark.integration

CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
READ_EXAMPLES: Final = {"admin": 25}
"""Examples per read operation for a role (others: :data:`OTHER_READ_EXAMPLES`)."""
OTHER_READ_EXAMPLES: Final = 10
CHANGE_EXAMPLES: Final = {"admin": 12}
OTHER_CHANGE_EXAMPLES: Final = 4
NEGATIVE_EXAMPLES: Final = 15
_READS: Final = frozenset({"GET", "HEAD"})
VICTIM: Final = "fuzz-victim"
"""The operator that generated changes act on (never the test's own operators)."""


@pytest.fixture(scope="module")
def world(api: ApiKit, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> World:
    operators.add_operator(
        api.server.runtime, login=VICTIM, role="auditor", password=None, now=datetime.now(UTC)
    )
    return make_world(api, fleet, tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def schema(api: ApiKit) -> Any:
    return schemathesis.openapi.from_url(
        api.url + "/openapi.json", verify=str(api.server.ca_bundle), timeout=60
    )


def _strategy(operation: Any, world: World, mode: GenerationMode) -> Any:
    """Generated cases, half of them with real path parameters (changes act on throwaway
    objects: an operator of their own, a device that is not enrolled)."""
    names = {p.name for p in operation.path_parameters}
    values = world.path_parameters()
    if operation.method.upper() not in _READS:
        values.update(login=VICTIM, device_id=world.registered[0])
    real = {k: v for k, v in values.items() if k in names}
    generated = operation.as_strategy(generation_mode=mode)
    if not real or mode is GenerationMode.NEGATIVE:
        return generated
    return st.one_of(generated, operation.as_strategy(path_parameters=real))


def _exercise(
    operation: Any,
    world: World,
    *,
    session: requests.Session,
    api: ApiKit,
    examples: int,
    mode: GenerationMode = GenerationMode.POSITIVE,
) -> None:
    @settings(
        max_examples=examples, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
    )  # fmt: skip
    @given(case=_strategy(operation, world, mode))
    def run(case: Any) -> None:
        if (
            len(json.dumps(case.body, default=str))
            >= api.server.runtime.settings.api.max_body_bytes
        ):
            return  # the front end answers 413 and closes mid-body (test_bad_input.py)
        case.call_and_validate(
            base_url=api.url, session=session, checks=CHECKS, verify=str(api.server.ca_bundle),
            timeout=60,
        )  # fmt: skip

    run()


@pytest.mark.parametrize("role", rbac.ROLES)
def test_every_operation_answers_as_documented(
    api: ApiKit, world: World, schema: Any, role: str
) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    with requests.Session() as session:
        session.headers["authorization"] = f"Bearer {api.token(role)}"
        for operation in operations:
            if operation.method.upper() in _READS:
                examples = READ_EXAMPLES.get(role, OTHER_READ_EXAMPLES)
            else:
                examples = CHANGE_EXAMPLES.get(role, OTHER_CHANGE_EXAMPLES)
            _exercise(operation, world, session=session, api=api, examples=examples)


def test_invalid_requests_are_client_errors_as_documented(
    api: ApiKit, world: World, schema: Any
) -> None:
    """Requests that break the document (negative mode) as an admin: no server error, and each
    answer as documented (invalid input is a 400 problem; see test_bad_input.py for codes)."""
    with requests.Session() as session:
        session.headers["authorization"] = f"Bearer {api.token('admin')}"
        for result in schema.get_all_operations():
            _exercise(
                result.ok(), world, session=session, api=api, examples=NEGATIVE_EXAMPLES,
                mode=GenerationMode.NEGATIVE,
            )  # fmt: skip
