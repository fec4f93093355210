"""One contract between UI and API: the UI's response models and its few copies of API rules
are checked against ``create_app().openapi()`` and the backend's constants, so a drift on
either side fails here rather than in a browser."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from frontend.lib import catalogue as ui_catalogue
from frontend.lib import models as ui
from frontend.lib import preferences as ui_preferences

#: UI response model -> the API's component schema it mirrors.
PAIRS: dict[type[BaseModel], str] = {
    ui.Problem: "ProblemPublic",
    ui.Method: "MethodPublic",
    ui.Progress: "Progress",
    ui.EpochProgress: "EpochProgress",
    ui.QueuePlace: "QueuePlace",
    ui.Run: "RunPublic",
    ui.Job: "JobPublic",
    ui.Preference: "PreferencePublic",
    ui.RunDetail: "RunDetail",
    ui.RunList: "RunList",
    ui.MetricPoint: "MetricPointPublic",
    ui.MetricPage: "MetricPage",
    ui.FrontPoint: "FrontPoint",
    ui.Front: "FrontPublic",
    ui.HypervolumePoint: "HypervolumePoint",
    ui.HypervolumeHistory: "HypervolumeHistory",
    ui.User: "UserPublic",
    ui.DatasetColumn: "DatasetColumn",
    ui.Dataset: "DatasetPublic",
    ui.DatasetList: "DatasetList",
    ui.DatasetPreview: "DatasetPreview",
}


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The API's component schemas, from the app itself (no server needed)."""
    from backend.app.core.config import Settings
    from backend.app.main import create_app

    home: Path = tmp_path_factory.mktemp("contract")
    settings = Settings(_env_file=None, database_url=f"sqlite:///{home / 'x.db'}", home=home)
    return create_app(settings).openapi()["components"]["schemas"]


def _types(spec: dict[str, Any], schemas: dict[str, Any]) -> set[str]:
    """JSON types a property may take (``$ref`` -> object, ``anyOf`` flattened)."""
    if "$ref" in spec:
        return {"object"}
    if "anyOf" in spec:
        return set().union(*(_types(s, schemas) for s in spec["anyOf"]))
    kind = spec.get("type")
    if kind == "integer":
        return {"integer", "number"}
    return {kind} if kind else {"any"}


def _ui_types(annotation: Any) -> set[str]:
    """JSON types a UI field accepts."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, type(int | None)):
        return set().union(*(_ui_types(a) for a in typing.get_args(annotation)))
    if origin is typing.Literal:
        return {"string"}
    simple = {
        int: {"integer", "number"},
        float: {"number", "integer"},
        str: {"string"},
        bool: {"boolean"},
        type(None): {"null"},
        bytes: {"string"},
    }
    if annotation in simple:
        return simple[annotation]
    if origin in (list, tuple):
        return {"array"}
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return {"object"}
    return {"any", "string", "object", "array", "number", "integer", "boolean", "null"}


@pytest.mark.parametrize("model", list(PAIRS), ids=lambda m: m.__name__)
def test_every_ui_field_is_in_the_api_schema_with_a_compatible_type(model, schemas):
    schema = schemas[PAIRS[model]]
    properties, required = schema["properties"], set(schema.get("required", []))
    for name, field in model.model_fields.items():
        assert name in properties, f"{model.__name__}.{name} is not in the API's {PAIRS[model]}"
        api = _types(properties[name], schemas)
        mine = _ui_types(field.annotation)
        assert "any" in api or api & mine, (
            f"{model.__name__}.{name}: the UI expects {sorted(mine)}, the API sends {sorted(api)}"
        )
        if field.is_required():
            assert name in required, (
                f"{model.__name__}.{name} is required by the UI but optional in the API"
            )
        if "null" in api and "null" not in mine and name in required:
            pytest.fail(f"{model.__name__}.{name} may be null in the API, not in the UI")


def test_run_and_job_states_and_splits_are_the_apis(schemas):
    states = set(typing.get_args(ui.Status))
    assert states == set(schemas["RunPublic"]["properties"]["status"]["enum"])
    assert states == set(schemas["JobPublic"]["properties"]["state"]["enum"])
    assert set(typing.get_args(ui.Split)) == set(
        schemas["MetricPointPublic"]["properties"]["split"]["enum"]
    )
    from backend.app.queue import TERMINAL_STATES

    assert set(TERMINAL_STATES) == ui.TERMINAL


def test_preference_limit_is_the_apis(schemas):
    from backend.app.core.config import Settings
    from pmtl_core.preferences import MAX_PREFERENCES

    api_limit = schemas["PreferenceVectors"]["properties"]["vectors"]["maxItems"]
    assert ui_preferences.MAX_PREFERENCES == api_limit == MAX_PREFERENCES
    assert Settings.model_fields["max_preferences"].default == api_limit


def test_options_the_api_refuses_are_the_ones_the_form_hides():
    from backend.app.catalogue import SERVER_ONLY_OPTIONS, list_problems

    assert ui_catalogue.SERVER_ONLY_OPTIONS == SERVER_ONLY_OPTIONS
    mnist = next(p for p in list_problems() if p["name"] == "multi_mnist")
    shown = ui_catalogue.client_options(mnist["options"])["properties"]
    assert not set(shown) & SERVER_ONLY_OPTIONS and {"train_size", "test_size"} <= set(shown)


def test_the_ui_keeps_no_reference_point_rule_of_its_own(schemas):
    """The reference point is the API's: returned with every front and hypervolume history."""
    for name in ("FrontPublic", "HypervolumeHistory"):
        assert "reference_point" in schemas[name]["properties"]
    compare = Path(ui_catalogue.__file__).parent / "views" / "compare.py"
    text = compare.read_text()
    assert ".reference_point" in text and "* 1.1" not in text and "1.1 *" not in text
