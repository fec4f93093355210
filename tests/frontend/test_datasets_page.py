"""Datasets page and the ``table`` problem on New run, against the real lab (API + worker).

The file uploader is driven through AppTest, so the upload goes UI → REST exactly as in a
browser session once Streamlit holds the file; the preview and the column types come from the
API; New run offers the data set's columns and shows the API's refusals in words.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from frontend.lib.views.table_options import default_kind
from tests.frontend._apptest import no_exception, texts
from tests.frontend._system import System


def _table(n: int = 60) -> pd.DataFrame:
    """Two learnable targets (a label, a price), two features and a constant column."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=n), rng.normal(5, 2, size=n)
    return pd.DataFrame(
        {
            "x1": x1.round(3),
            "x2": x2.round(3),
            "colour": rng.choice(["red", "green", "blue"], size=n),
            "label": np.where(x1 > 0, "yes", "no"),
            "price": (3 * x2 + 100).round(2),
            "flat": 7,
        }
    )


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _clear(lab: System) -> None:
    for dataset in lab.api("GET", "/datasets").json()["data"]:
        assert lab.api("DELETE", f"/datasets/{dataset['id']}").status_code in (204, 409)


def _upload(lab: System, name: str) -> dict:
    response = lab.api(
        "POST", "/datasets", files={"file": ("t.csv", _csv(_table()))}, data={"name": name}
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_default_kind_is_regression_for_many_valued_floats_only():
    assert default_kind("float64", [x / 7 for x in range(50)]) == "regression"
    assert default_kind("float64", [0.0, 1.0, None, 1.0]) == "classification"
    assert default_kind("int64", list(range(50))) == "classification"
    assert default_kind("object", ["a", "b"]) == "classification"


def test_without_data_sets_both_pages_say_so_and_new_run_links_to_datasets(open_page, lab):
    _clear(lab)
    at = open_page("datasets")
    no_exception(at)
    assert at.title[0].value == "Datasets"
    assert "No data sets yet" in texts(at)
    at = open_page("new_run")
    at.selectbox(key="new_run.problem").set_value("table").run()
    no_exception(at)
    assert "you have none yet" in texts(at)
    assert [link.label for link in at.page_link] == ["Upload a table on the Datasets page"]
    at.button(key="new_run.submit").click().run()
    assert "upload a data set on the Datasets page first" in at.error[0].value


def test_upload_in_the_page_then_preview_with_types_then_delete(open_page, lab):
    at = open_page("datasets")
    at.file_uploader(key="datasets.file").upload("houses.csv", _csv(_table()), "text/csv")
    at.text_input(key="datasets.name").input("houses")
    at.button(key="datasets.upload").click().run()
    no_exception(at)
    stored = [d for d in lab.api("GET", "/datasets").json()["data"] if d["name"] == "houses"]
    assert len(stored) == 1 and stored[0]["n_rows"] == 60
    dataset_id = stored[0]["id"]
    assert f"Uploaded “houses” (data set #{dataset_id})." in texts(at)
    assert at.selectbox(key="datasets.selected").value == dataset_id
    listing, preview = (f.value for f in at.dataframe)
    assert dataset_id in list(listing["id"])
    dtypes = {c["name"]: c["dtype"] for c in stored[0]["columns"]}
    assert dtypes["x1"] == "float64" and dtypes["flat"] == "int64"
    assert list(preview.columns) == [f"{name} ({dtype})" for name, dtype in dtypes.items()]
    assert len(preview) == 20 and "First 20 of 60 rows" in texts(at)
    assert list(preview["flat (int64)"].unique()) == [7]

    at.button(key="datasets.delete").click().run()
    no_exception(at)
    assert "Deleted “houses”" in texts(at)
    assert lab.api("GET", f"/datasets/{dataset_id}").status_code == 404


def test_an_unreadable_file_is_refused_in_words(open_page):
    at = open_page("datasets")
    at.file_uploader(key="datasets.file").upload("empty.csv", b"a,b,c\n", "text/csv")
    at.button(key="datasets.upload").click().run()
    no_exception(at)
    message = at.error[0].value
    assert message.startswith("Could not upload empty.csv: The table has a header")
    assert "no data rows" in message


def _table_form(at, dataset_id: int, targets: list[str]) -> None:
    at.selectbox(key="new_run.problem").set_value("table").run()
    at.selectbox(key="new_run.table.dataset").set_value(dataset_id).run()
    at.multiselect(key=f"new_run.table.{dataset_id}.targets").set_value(targets).run()


def test_new_run_offers_targets_with_kinds_and_features_and_submits(open_page, lab):
    dataset = _upload(lab, "for a run")
    at = open_page("new_run")
    _table_form(at, dataset["id"], ["label", "price"])
    no_exception(at)
    prefix = f"new_run.table.{dataset['id']}"
    assert at.selectbox(key=f"{prefix}.kind.label").value == "classification"
    assert at.selectbox(key=f"{prefix}.kind.price").value == "regression"
    features = at.multiselect(key=f"{prefix}.features.label|price")
    assert features.value == ["x1", "x2", "colour", "flat"]
    features.set_value(["x1", "x2", "colour"])
    at.number_input(key=f"{prefix}.split_seed").set_value(3)
    at.text_input(key="new_run.train.table.epochs").input("1")
    at.text_input(key="new_run.name").input("table from the UI")
    at.run()
    # the raw options form is gone: only the network sizes wait under "Advanced"
    keys = {w.key for w in at.text_input}
    assert "new_run.opt.table.hidden" in keys and "new_run.opt.table.targets" not in keys
    assert "2 task(s)" in texts(at)
    at.button(key="new_run.submit").click().run()
    no_exception(at)
    run_id = int(at.query_params["run"])
    run = lab.api("GET", f"/runs/{run_id}").json()
    # Training a table run is the backend's test (tests/backend/test_api_datasets.py); free
    # the shared worker for the other UI tests.
    lab.api("POST", f"/runs/{run_id}/cancel")
    assert (run["problem"], run["n_tasks"], run["n_preferences"]) == ("table", 2, 5)
    assert run["task_names"] == ["label", "price"]
    assert run["problem_options"]["targets"] == [
        {"column": "label", "kind": "classification"},
        {"column": "price", "kind": "regression"},
    ]
    assert run["problem_options"]["features"] == ["x1", "x2", "colour"]
    assert run["problem_options"]["split_seed"] == 3


@pytest.mark.parametrize(
    ("targets", "kind", "words"),
    [
        (["label", "flat"], None, "Target 'flat' is constant"),
        (["label", "colour"], "regression", "Target 'colour' is not numeric"),
    ],
)
def test_the_apis_refusal_is_shown_in_words_next_to_the_form(open_page, lab, targets, kind, words):
    dataset = _upload(lab, "to refuse")
    before = lab.api("GET", "/runs").json()["count"]
    at = open_page("new_run")
    _table_form(at, dataset["id"], targets)
    if kind:
        at.selectbox(key=f"new_run.table.{dataset['id']}.kind.{targets[1]}").set_value(kind)
        at.run()
    at.button(key="new_run.submit").click().run()
    no_exception(at)
    errors = [e.value for e in at.error]
    assert any(e.startswith("The API refused these options: ") and words in e for e in errors)
    assert "Traceback" not in texts(at) and "validation error" not in texts(at)
    assert lab.api("GET", "/runs").json()["count"] == before


def test_fewer_than_two_targets_is_explained_before_submit(open_page, lab):
    dataset = _upload(lab, "one target")
    at = open_page("new_run")
    _table_form(at, dataset["id"], ["label"])
    no_exception(at)
    assert "Choose two or more target columns" in texts(at)
    at.button(key="new_run.submit").click().run()
    assert "choose two or more target columns (one task each)" in at.error[0].value


def test_use_in_a_new_run_opens_new_run_on_that_data_set(open_page, lab):
    dataset = _upload(lab, "to use")
    at = open_page("datasets")
    at.selectbox(key="datasets.selected").set_value(dataset["id"]).run()
    at.button(key="datasets.use").click().run()
    no_exception(at)
    at.switch_page("app_pages/new_run.py").run()
    no_exception(at)
    assert at.selectbox(key="new_run.problem").value == "table"
    assert at.selectbox(key="new_run.table.dataset").value == dataset["id"]


def test_deleting_a_data_set_in_use_is_refused_in_words(open_page, lab):
    dataset = _upload(lab, "in use")
    run = lab.create_run(
        name="uses a data set",
        problem="table",
        problem_options={
            "dataset_id": dataset["id"],
            "targets": [
                {"column": "label", "kind": "classification"},
                {"column": "price", "kind": "regression"},
            ],
        },
        training={"epochs": 200, "batch_size": 16},
    )
    try:
        at = open_page("datasets")
        at.selectbox(key="datasets.selected").set_value(dataset["id"]).run()
        at.button(key="datasets.delete").click().run()
        no_exception(at)
        message = at.error[0].value
        assert message.startswith("Could not delete “in use”: ") and str(run["id"]) in message
    finally:
        lab.api("POST", f"/runs/{run['id']}/cancel")
    assert lab.api("GET", f"/datasets/{dataset['id']}").status_code == 200
