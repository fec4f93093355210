"""Runs: the table of runs with status, progress and hypervolume."""

from frontend.lib.views.runs import render

render()
