"""Runs and Compare pages against the real API."""

from __future__ import annotations

from tests.frontend._apptest import no_exception, texts


def test_runs_table_lists_runs_and_opens_one(open_page, finished_run):
    at = open_page("runs")
    no_exception(at)
    table = at.dataframe[0].value
    row = table[table["id"] == finished_run["id"]].iloc[0]
    assert (row["problem"], row["method"], row["status"]) == ("concave", "pareto_mtl", "finished")
    assert row["prefs"] >= 4 and row["epoch · jobs"] == "4/4 · 1/1"
    assert row["progress"] == 1.0 and row["HV"] > 0
    assert "owner" not in table  # one owner: no column for it (the table fits 1400 px)

    at.selectbox(key="runs.open").set_value(finished_run["id"]).run()
    at.button(key="runs.open_button").click().run()
    no_exception(at)
    assert at.query_params["run"] == str(finished_run["id"])
    assert at.title[0].value.startswith(f"Run #{finished_run['id']}")


def test_compare_overlays_runs_with_a_common_reference(open_page, finished_run, linear_run):
    at = open_page("compare")
    at.selectbox(key="compare.problem").set_value("concave").run()
    at.multiselect(key="compare.runs.concave").set_value([finished_run["id"], linear_run["id"]])
    at.run()
    no_exception(at)
    table = at.dataframe[0].value
    assert set(table["method"]) == {"pareto_mtl", "linear"}
    assert table["hypervolume"].notna().all() and (table["hypervolume"] > 0).all()
    assert "common reference point" in texts(at)
    assert at.get("vega_lite_chart")
    # A function problem: only its train split is offered.
    assert at.radio(key="compare.split.concave").options == ["train"]
    # The same reference point as each run's page, so the same hypervolume.
    for run in (finished_run, linear_run):
        page = open_page("run_detail", run=run["id"])
        shown = next(m.value for m in page.metric if m.label == "current hypervolume")
        label = f"#{run['id']} {run['name']}"
        assert f"{table[table['run'] == label]['hypervolume'].iloc[0]:.5g}" == shown
    assert "training time" in table and "the numbers match them" in texts(at)


def test_three_tasks_get_a_scatter_matrix_and_parallel_coordinates(open_page, three_task_run):
    run = three_task_run
    at = open_page("run_detail", run=run["id"])
    no_exception(at)
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 3  # scatter matrix, parallel coordinates, hypervolume
    assert "repeat" in charts[0].proto.spec
    new = open_page("new_run")
    new.selectbox(key="new_run.problem").set_value("sphere3").run()
    no_exception(new)
    # No quarter circle for three tasks: evenly spread on the simplex, or a table.
    assert new.radio(key="new_run.prefs.sphere3.mode").options == ["Evenly spread", "Table"]
