"""Entry point of the UI (``streamlit run frontend/streamlit_app.py``): only the frame.

Page config, the API client in session state, the token (``PMTL_TOKEN`` or a login box), an
"API unreachable" banner that retries, and ``st.navigation`` over ``app_pages/``.
"""

from __future__ import annotations

import streamlit as st

from frontend.lib import frame, session

st.set_page_config(page_title="Pareto MTL Lab", page_icon=":material/scatter_plot:", layout="wide")

pages = {
    "runs": st.Page("app_pages/runs.py", title="Runs", icon=":material/list:", default=True),
    "new_run": st.Page("app_pages/new_run.py", title="New run", icon=":material/add_circle:"),
    "run_detail": st.Page("app_pages/run_detail.py", title="Run", icon=":material/insights:"),
    "compare": st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:"),
    "datasets": st.Page("app_pages/datasets.py", title="Datasets", icon=":material/table:"),
}
session.register_pages(pages)
navigation = st.navigation(list(pages.values()))

state, user, message = frame.check_connection()
frame.sidebar(user)
if state == "unreachable":
    frame.unreachable_banner(message)
elif state == "signed_out":
    frame.login_box(message)
else:
    navigation.run()
