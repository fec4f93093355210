"""Runs and Compare pages against the real API."""

from __future__ import annotations

from tests.frontend._apptest import no_exception, texts


def test_runs_table_lists_runs_and_opens_one(open_page, finished_run):
    at = open_page("runs")
    no_exception(at)
    table = at.dataframe[0].value
    row = table[table["id"] == finished_run["id"]].iloc[0]
    assert (row["problem"], row["method"], row["status"]) == ("concave", "pareto_mtl", "finished")
    assert row["preferences"] >= 4 and row["jobs done"] == "1/1" and row["epoch"] == "4/4"
    assert row["progress"] == 1.0 and row["test HV"] > 0

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
