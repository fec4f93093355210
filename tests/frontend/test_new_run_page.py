"""New run: a run created through the page trains, and its front forms live on the Run page."""

from __future__ import annotations

import time

from tests.frontend._apptest import no_exception, texts


def _form(at, name: str, epochs: int, count: int, steps: int = 20) -> None:
    at.text_input(key="new_run.name").input(name)
    at.text_input(key="new_run.train.concave.epochs").input(str(epochs))
    at.text_input(key="new_run.train.concave.steps_per_epoch").input(str(steps))
    at.number_input(key="new_run.prefs.concave.count").set_value(count)
    at.run()


def test_page_lists_problems_methods_and_renders_the_method_schema(open_page):
    at = open_page("new_run")
    no_exception(at)
    assert at.title[0].value == "New run"
    assert {"concave", "sphere3"} <= set(at.selectbox(key="new_run.problem").options)
    assert "pareto_mtl" in at.selectbox(key="new_run.method").options
    # Pareto MTL's hyperparameters, with their defaults shown.
    assert at.text_input(key="new_run.hp.pareto_mtl.eps").value == "0"
    assert at.selectbox(key="new_run.hp.pareto_mtl.normalization").value == "none"
    # The concave problem's suggested training settings override the schema defaults.
    assert at.text_input(key="new_run.train.concave.lr").value == "0.1"
    # Two tasks: evenly spread rays on the quarter circle, previewed before submitting.
    assert at.radio(key="new_run.prefs.concave.mode").options == [
        "Evenly spread",
        "Table",
        "Click on the quarter circle",
    ]
    assert "(1.00, 0.00)" in texts(at)


def test_invalid_hyperparameter_is_explained_before_submit(open_page, lab):
    at = open_page("new_run")
    before = lab.api("GET", "/runs").json()["count"]
    at.text_input(key="new_run.hp.pareto_mtl.eps").input("-0.5").run()
    no_exception(at)
    assert "eps: must be ≥ 0" in texts(at)
    at.text_input(key="new_run.train.concave.lr").input("fast").run()
    assert "lr: 'fast' is not a number" in texts(at)
    at.button(key="new_run.submit").click().run()
    no_exception(at)
    message = at.error[0].value
    assert "Fix these before submitting" in message and "hyperparameter eps" in message
    assert lab.api("GET", "/runs").json()["count"] == before  # nothing was sent


def test_table_of_vectors_is_validated_live(open_page):
    at = open_page("new_run")
    at.radio(key="new_run.prefs.concave.mode").set_value("Table").run()
    no_exception(at)
    assert at.get("arrow_data_editor") or at.dataframe  # the editable table is shown
    assert "normalised to unit length" in texts(at)


def test_rejection_by_the_api_is_shown_as_a_readable_message(open_page):
    at = open_page("new_run")
    at.number_input(key="new_run.seed").set_value(2**40).run()  # the API allows < 2**31
    at.button(key="new_run.submit").click().run()
    no_exception(at)
    message = at.error[0].value
    assert message.startswith("The API rejected the run: seed: ")
    assert "less than or equal to 2147483647" in message
    assert "Traceback" not in texts(at)


def test_created_run_lands_on_its_page_and_the_front_forms_live(open_page, lab):
    at = open_page("new_run")
    # About 0.5 s per epoch on an idle CPU: slow enough for the polls below to see the front
    # while it is still forming.
    _form(at, "made in the UI", epochs=6, count=4, steps=250)
    at.button(key="new_run.submit").click().run()
    no_exception(at)
    run_id = int(at.query_params["run"])
    assert f"Run #{run_id}" in at.title[0].value
    run = lab.api("GET", f"/runs/{run_id}").json()
    assert (run["name"], run["n_preferences"], run["training"]["epochs"]) == (
        "made in the UI",
        4,
        6,
    )

    # AppTest keeps re-running the page last chosen with switch_page(); follow the app's own
    # st.switch_page to the Run page (its ?run= query parameter stays).
    at.switch_page("app_pages/run_detail.py")
    # Poll like the fragment does: each run fetches metrics?after=SEQ and redraws.
    store_key = f"run.{run_id}.store"
    seen: list[tuple[int, str]] = []
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        at.run()
        no_exception(at)
        store = at.session_state[store_key]
        seen.append((len(store.points), store.status))
        if store.finished:
            break
        time.sleep(0.3)
    assert seen[-1] == (4 * 6, "finished"), seen[-5:]
    # Points arrived while the run was still training, in increments (incremental polling).
    growing = [n for n, status in seen if 0 < n < 24 and status == "running"]
    assert growing, f"never saw a partial front: {seen}"
    assert at.session_state[store_key].last_seq >= 24
    assert at.title[0].value == f"Run #{run_id} · made in the UI"
    caption = texts(at)
    assert "24 metric points" in caption and "not polling" in caption  # polling has stopped
    assert "Hypervolume (train)" in caption


def test_the_multimnist_example_is_one_click_away(open_page):
    at = open_page("new_run")
    at.button(key="new_run.example").click().run()
    no_exception(at)
    assert at.selectbox(key="new_run.problem").value == "multi_mnist"
    assert at.selectbox(key="new_run.method").value == "pareto_mtl"
    assert at.text_input(key="new_run.name").value == "Pareto MTL on MultiMNIST"
    assert at.number_input(key="new_run.prefs.multi_mnist.count").value == 5
    # the problem's own training settings: the paper's batch size
    assert at.text_input(key="new_run.train.multi_mnist.batch_size").value == "256"


def test_example_sets_the_name_once_and_the_name_follows_the_pickers(open_page, caplog):
    at = open_page("new_run")
    assert at.text_input(key="new_run.name").value == "pareto_mtl on concave"
    at.selectbox(key="new_run.method").set_value("mgda").run()
    assert at.text_input(key="new_run.name").value == "mgda on concave"  # not typed: follows
    with caplog.at_level("WARNING"):
        at.button(key="new_run.example").click().run()
    no_exception(at)
    assert at.text_input(key="new_run.name").value == "Pareto MTL on MultiMNIST"
    assert not [r for r in caplog.records if "new_run.name" in r.getMessage()]
    assert not [w for w in at.warning if "new_run.name" in str(w.value)]


def test_form_offers_nothing_the_api_refuses_and_folds_expert_settings(open_page):
    at = open_page("new_run")
    at.selectbox(key="new_run.problem").set_value("multi_mnist").run()
    no_exception(at)
    keys = {w.key for w in at.text_input} | {w.key for w in at.checkbox}
    assert "new_run.opt.multi_mnist.train_size" in keys
    assert not {k for k in keys if k.endswith((".data_dir", ".download"))}
    # Up front: the training essentials; the method's hyperparameters (its paper's defaults),
    # the optimiser and the problem options wait under "Advanced".
    advanced = next(e for e in at.expander if e.label.startswith("Advanced"))
    inside = {w.key for w in advanced.text_input} | {w.key for w in advanced.selectbox}
    assert {"new_run.hp.pareto_mtl.eps", "new_run.hp.pareto_mtl.grad_wrt"} <= inside
    assert {"new_run.train.multi_mnist.momentum", "new_run.opt.multi_mnist.width"} <= inside
    assert "new_run.train.multi_mnist.epochs" not in inside
    assert at.text_input(key="new_run.train.multi_mnist.epochs").value == "100"


def test_table_rows_follow_the_count(open_page):
    at = open_page("new_run")
    at.radio(key="new_run.prefs.concave.mode").set_value("Table").run()
    assert "5 model(s) of concave" in texts(at)
    at.number_input(key="new_run.prefs.concave.table_n").set_value(7).run()
    no_exception(at)
    assert "7 model(s) of concave" in texts(at)  # the table was refilled with 7 rows
