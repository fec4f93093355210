"""Datasets: upload a table (CSV or Parquet), preview its first rows, delete it."""

from frontend.lib.views.datasets import render

render()
