"""``GET /datasets/{id}/preview``: the first rows of an uploaded table, as the UI shows them."""

from __future__ import annotations

import io

import pandas as pd

from tests.backend._api import Api


def _upload(api: Api, data: bytes, filename: str, user: str = "alice") -> dict:
    response = api.client.post(
        "/api/v1/datasets",
        files={"file": (filename, data, "application/octet-stream")},
        headers=api.headers(user),
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_preview_of_a_csv_gives_the_first_rows_with_missing_values_as_null(api):
    lines = ["a,b,c"] + [f"{i},{i / 2},{'x' if i % 2 else ''}" for i in range(30)]
    dataset = _upload(api, ("\n".join(lines) + "\n").encode(), "t.csv")
    response = api.get(f"/datasets/{dataset['id']}/preview", params={"rows": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"] == ["a", "b", "c"]
    assert body["rows"] == [[0, 0.0, None], [1, 0.5, "x"], [2, 1.0, None]]
    default = api.get(f"/datasets/{dataset['id']}/preview").json()
    assert len(default["rows"]) == 20


def test_preview_of_a_parquet_file_and_of_a_table_shorter_than_asked(api):
    frame = pd.DataFrame({"when": pd.to_datetime(["2024-01-02", "2024-03-04"]), "k": [1, 2]})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    dataset = _upload(api, buffer.getvalue(), "t.parquet")
    body = api.get(f"/datasets/{dataset['id']}/preview", params={"rows": 50}).json()
    assert body["columns"] == ["when", "k"]
    assert [r[1] for r in body["rows"]] == [1, 2]
    assert body["rows"][0][0].startswith("2024-01-02")


def test_preview_is_the_owners_only_and_rows_are_bounded(api):
    dataset = _upload(api, b"a,b\n1,2\n", "t.csv")
    assert api.get(f"/datasets/{dataset['id']}/preview", user="bob").status_code == 404
    assert api.get("/datasets/999/preview").status_code == 404
    assert api.get(f"/datasets/{dataset['id']}/preview", params={"rows": 0}).status_code == 422
    assert api.get(f"/datasets/{dataset['id']}/preview", params={"rows": 10**6}).status_code == 422
