"""The New-run page: problem and method, hyperparameters, training, preferences, submit."""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend.lib import session
from frontend.lib.models import Method, Problem
from frontend.lib.schema_form import fields, render_form
from frontend.lib.views.preference_input import choose_preferences

__all__ = ["render", "training_fields"]

CATALOGUE_KEY = "new_run.catalogue"
#: The ready-to-submit example: Pareto MTL on MultiMNIST with 5 evenly spread preferences and
#: the problem's own training settings (the paper's LeNet, SGD, batch 256).
EXAMPLE = {"problem": "multi_mnist", "method": "pareto_mtl", "name": "Pareto MTL on MultiMNIST"}


def _catalogue() -> tuple[list[Problem], list[Method], dict[str, Any]] | None:
    """Problems, methods and the training schema, fetched once per session."""
    cached = st.session_state.get(CATALOGUE_KEY)
    if cached is not None:
        return cached
    client = session.client()
    try:
        loaded = (client.problems(), client.methods(), client.training_schema())
    except session.API_ERRORS as exc:
        session.report(exc, "Could not load problems and methods")
        return None
    st.session_state[CATALOGUE_KEY] = loaded
    return loaded


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
        tasks = ", ".join(problem.task_names)
        st.caption(f"{problem.summary} — {problem.n_tasks} tasks ({tasks}); {problem.kind}.")
    with right:
        name = st.selectbox("Method", list(by_method), key="new_run.method")
        method = by_method[name]
        traits = [
            "uses preference vectors" if method.uses_preferences else "ignores preference vectors",
            "couples its subproblems" if method.couples_subproblems else "independent subproblems",
        ]
        st.caption(f"{method.summary} ({'; '.join(traits)}).")
    return problem, method


def _submit(body: dict[str, Any], problems: list[str]) -> None:
    if problems:
        st.error("Fix these before submitting:\n\n" + "\n".join(f"- {p}" for p in problems))
        return
    try:
        run = session.client().create_run(body)
    except session.API_ERRORS as exc:
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
        st.session_state["new_run.name"] = EXAMPLE["name"]


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
    name = left.text_input("Run name", value=f"{method.name} on {problem.name}", key="new_run.name")
    seed = right.number_input("Seed", min_value=0, value=0, step=1, key="new_run.seed")

    st.subheader("Hyperparameters")
    hyper, hyper_errors = render_form(method.hyperparameters, key=f"new_run.hp.{method.name}")
    st.subheader("Training")
    training, training_errors = render_form(
        training_schema,
        key=f"new_run.train.{problem.name}",
        defaults=problem.default_config,
        columns=3,
        only=training_fields(problem, training_schema),
    )
    with st.expander("Problem options"):
        options, option_errors = render_form(problem.options, key=f"new_run.opt.{problem.name}")

    st.subheader("Preference vectors")
    if not method.uses_preferences:
        st.info(f"{method.name} ignores preference vectors: each vector trains one more model.")
    vectors, pref_errors = choose_preferences(
        f"new_run.prefs.{problem.name}",
        problem.task_names,
        default_count=5 if method.uses_preferences else 1,
    )

    problems_found = [f"hyperparameter {k}: {v}" for k, v in hyper_errors.items()]
    problems_found += [f"training {k}: {v}" for k, v in training_errors.items()]
    problems_found += [f"problem option {k}: {v}" for k, v in option_errors.items()]
    problems_found += [f"preferences {e}" for e in pref_errors]
    if not vectors and not pref_errors:
        problems_found.append("choose at least one preference vector")
    if not name.strip():
        problems_found.append("give the run a name")
    body = {
        "name": name.strip(),
        "problem": problem.name,
        "problem_options": _changed(options, problem.options),
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
        _submit(body, problems_found)
