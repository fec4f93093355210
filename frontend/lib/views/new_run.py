"""The New-run page: problem and method, hyperparameters, training, preferences, submit."""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend.lib import catalogue, session
from frontend.lib.models import Method, Problem
from frontend.lib.schema_form import fields, render_form
from frontend.lib.views.preference_input import choose_preferences
from frontend.lib.views.table_options import FORM_OPTIONS, TableChoice, table_options

__all__ = ["MAIN_TRAINING", "render", "training_fields"]

#: The problem whose options are a form of its own (data set, targets, features).
TABLE = "table"
#: Training settings shown up front; the others wait under "Advanced".
MAIN_TRAINING = frozenset({"epochs", "lr", "batch_size", "steps_per_epoch"})
NAME_KEY = "new_run.name"
#: The ready-to-submit example: Pareto MTL on MultiMNIST with 5 evenly spread preferences and
#: the problem's own training settings (the paper's LeNet, SGD, batch 256).
EXAMPLE = {"problem": "multi_mnist", "method": "pareto_mtl", "name": "Pareto MTL on MultiMNIST"}


def _catalogue() -> tuple[list[Problem], list[Method], dict[str, Any]] | None:
    """Problems, methods and the training schema, fetched once per session."""
    try:
        return catalogue.catalogue()
    except session.API_ERRORS as exc:
        session.report(exc, "Could not load problems and methods")
        return None


def training_fields(problem: Problem, schema: dict[str, Any]) -> set[str]:
    """Training settings that matter for the problem's kind (batches or steps per epoch)."""
    names = {f.name for f in fields(schema)}
    irrelevant = "batch_size" if problem.kind == "function" else "steps_per_epoch"
    return names - {irrelevant}


def _changed(values: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    defaults = {f.name: f.default for f in fields(schema)}
    return {k: v for k, v in values.items() if defaults.get(k) != v}


def _pickers(problems: list[Problem], methods: list[Method]) -> tuple[Problem, Method]:
    by_problem = {p.name: p for p in problems}
    by_method = {m.name: m for m in methods}
    left, right = st.columns(2)
    with left:
        name = st.selectbox("Problem", list(by_problem), key="new_run.problem")
        problem = by_problem[name]
        tasks = f"{problem.n_tasks} tasks ({', '.join(problem.task_names)})"
        if not problem.task_names:  # the tasks come from the options (table: its targets)
            tasks = "tasks chosen below"
        st.caption(f"{problem.summary} — {tasks}; {problem.kind}.")
    with right:
        name = st.selectbox("Method", list(by_method), key="new_run.method")
        method = by_method[name]
        traits = [
            "uses preference vectors" if method.uses_preferences else "ignores preference vectors",
            "couples its subproblems" if method.couples_subproblems else "independent subproblems",
        ]
        st.caption(f"{method.summary} ({'; '.join(traits)}).")
    return problem, method


def _submit(body: dict[str, Any], problems: list[str], table: TableChoice | None) -> None:
    if problems:
        st.error("Fix these before submitting:\n\n" + "\n".join(f"- {p}" for p in problems))
        return
    try:
        run = session.client().create_run(body)
    except session.API_ERRORS as exc:
        if table is not None and getattr(exc, "status", None) == 422:
            table.refused(str(exc))
            st.error("The API rejected the run: see the message under the data set options.")
            return
        session.report(exc, "The API rejected the run")
        return
    st.session_state["run_detail.flash"] = f"Run #{run.id} “{run.name}” submitted."
    session.go_to("run_detail", run=run.id)


def _example_button(problems: list[Problem], methods: list[Method]) -> None:
    """One click fills the form with the MultiMNIST example (before its widgets are drawn)."""
    if EXAMPLE["problem"] not in {p.name for p in problems}:
        return
    if EXAMPLE["method"] not in {m.name for m in methods}:
        return
    if st.button(
        "Fill in the MultiMNIST example",
        icon=":material/auto_awesome:",
        key="new_run.example",
        help="Pareto MTL on MultiMNIST, 5 preference vectors, the paper's training settings",
    ):
        st.session_state["new_run.problem"] = EXAMPLE["problem"]
        st.session_state["new_run.method"] = EXAMPLE["method"]
        st.session_state[NAME_KEY] = EXAMPLE["name"]


def _name_input(problem: Problem, method: Method) -> str:
    """The run name: follows the pickers until the user types one (set once, by its key)."""
    auto = f"{method.name} on {problem.name}"
    previous = st.session_state.get("new_run.auto_name")
    if st.session_state.get(NAME_KEY) in (None, previous):
        st.session_state[NAME_KEY] = auto
    st.session_state["new_run.auto_name"] = auto
    return st.text_input("Run name", key=NAME_KEY)


def _settings(
    problem: Problem, method: Method, training_schema: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[str]]:
    """Training essentials up front; the method's hyperparameters (its paper's defaults), the
    other training settings and the problem options under "Advanced". Returns the values and
    the messages of invalid fields."""
    st.subheader("Training")
    relevant = training_fields(problem, training_schema)
    training, training_errors = render_form(
        training_schema,
        key=f"new_run.train.{problem.name}",
        defaults=problem.default_config,
        columns=3,
        only=relevant & MAIN_TRAINING,
    )
    with st.expander("Advanced: method hyperparameters, optimiser, problem options"):
        st.caption(
            f"Defaults are those of the {method.name} paper and of the {problem.name} "
            "problem; change them only if you know why."
        )
        st.markdown(f"**Hyperparameters of {method.name}**")
        hyper, hyper_errors = render_form(method.hyperparameters, key=f"new_run.hp.{method.name}")
        st.markdown("**Optimiser and schedule**")
        more, more_errors = render_form(
            training_schema,
            key=f"new_run.train.{problem.name}",
            defaults=problem.default_config,
            columns=3,
            only=relevant - MAIN_TRAINING,
        )
        st.markdown(f"**Options of {problem.name}**")
        schema = catalogue.client_options(problem.options)
        only = None
        if problem.name == TABLE:
            only = {f.name for f in fields(schema)} - FORM_OPTIONS
        options, option_errors = render_form(schema, key=f"new_run.opt.{problem.name}", only=only)
    training.update(more)
    found = [f"hyperparameter {k}: {v}" for k, v in hyper_errors.items()]
    found += [f"training {k}: {v}" for k, v in {**training_errors, **more_errors}.items()]
    found += [f"problem option {k}: {v}" for k, v in option_errors.items()]
    return hyper, training, _changed(options, schema), found


def render() -> None:
    """Draw the page."""
    st.title("New run")
    loaded = _catalogue()
    if loaded is None:
        return
    problems, methods, training_schema = loaded
    if not problems or not methods:
        st.warning("The API lists no problems or no methods.")
        return
    _example_button(problems, methods)
    problem, method = _pickers(problems, methods)
    left, right = st.columns([3, 1])
    with left:
        name = _name_input(problem, method)
    seed = right.number_input("Seed", min_value=0, value=0, step=1, key="new_run.seed")
    table: TableChoice | None = None
    task_names = problem.task_names
    if problem.name == TABLE:
        st.subheader("Data")
        table = table_options(problem.name)
        task_names = table.task_names
    hyper, training, options, problems_found = _settings(problem, method, training_schema)
    if table is not None:
        options = {**options, **table.options}
        problems_found = table.problems + problems_found

    st.subheader("Preference vectors")
    if not method.uses_preferences:
        st.info(f"{method.name} ignores preference vectors: each vector trains one more model.")
    vectors: list[list[float]] = []
    pref_errors: list[str] = []
    if len(task_names) >= 2:
        vectors, pref_errors = choose_preferences(
            f"new_run.prefs.{problem.name}.{len(task_names)}"
            if table is not None
            else f"new_run.prefs.{problem.name}",
            task_names,
            default_count=5 if method.uses_preferences else 1,
        )
    else:
        st.info("Choose two or more target columns: each is one task of the preference vectors.")

    problems_found += [f"preferences {e}" for e in pref_errors]
    if not vectors and not pref_errors and len(task_names) >= 2:
        problems_found.append("choose at least one preference vector")
    if not name.strip():
        problems_found.append("give the run a name")
    body = {
        "name": name.strip(),
        "problem": problem.name,
        "problem_options": options,
        "method": method.name,
        "preferences": {"vectors": vectors},
        "hyperparameters": hyper,
        "training": training,
        "seed": int(seed),
    }
    st.divider()
    st.caption(
        f"{len(vectors)} model(s) of {problem.name} with {method.name}, "
        f"{training.get('epochs', '?')} epoch(s) each."
    )
    if st.button("Start run", type="primary", icon=":material/play_arrow:", key="new_run.submit"):
        _submit(body, problems_found, table)
