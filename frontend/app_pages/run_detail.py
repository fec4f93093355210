"""Run: the Pareto front forming live, jobs, the chosen solution and its download."""

from frontend.lib.views.run_detail import render

render()
