"""New run: problem, method, hyperparameters, training settings and preference vectors."""

from frontend.lib.views.new_run import render

render()
