"""Compare: fronts of several runs of one problem overlaid, with their quality."""

from frontend.lib.views.compare import render

render()
