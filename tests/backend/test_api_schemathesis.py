"""Property-based requests from the app's own OpenAPI document (schemathesis, in process).

Bounded: about 25 examples per operation, no deadline, no shrinking; every response must be
a non-5xx, with a documented status code, content type and schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend.app.db.migrate import upgrade
from tests.backend._api import Api

#: 25 generated requests per operation: half valid per the schema, half invalid.
EXAMPLES_PER_MODE = 13
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One app on a SQLite file with a user, a run and metric points to find."""
    home: Path = tmp_path_factory.mktemp("schemathesis")
    url = f"sqlite:///{home / 'pmtl.db'}"
    upgrade(url)
    with Api.start(url, home) as api:
        run = api.create_run(preferences={"count": 2})
        claim = api.claim()
        api.report(claim, 1, {p["id"]: [0.5, 0.7] for p in run["preferences"]})
        api.create_run(preferences={"count": 3})
        yield api


def _operations(api: Api):
    loaded = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    return [result.ok() for result in loaded.get_all_operations()]


# schemathesis' own pytest plugin does not support this pytest version; drive hypothesis
# directly, one positive and one negative strategy per operation.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_no_request_makes_a_server_error(harness: Api, mode: GenerationMode):
    failures: list[str] = []
    operations = _operations(harness)
    assert len(operations) >= 14
    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_MODE,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
            database=None,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case) -> None:
            case.call_and_validate(headers=harness.headers("alice"), checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            # No parameters to make invalid (e.g. GET /healthz): nothing negative to send.
            assert mode is GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {type(exc).__name__}: {exc}"[:3000])
    assert not failures, "\n\n".join(failures)
