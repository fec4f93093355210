"""A small two-task table shared by the table problem's tests and the datasets API's tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGETS = [
    {"column": "label", "kind": "classification"},
    {"column": "price", "kind": "regression"},
]


def make_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Two tasks: ``label`` (yes/no) from x1 and the colour, ``price`` from x2 and the colour."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(5, 2, size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    frame = pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "colour": colour,
            "label": np.where(x1 + (colour == "red") > 0.5, "yes", "no"),
            "price": 3 * x2 + 100 + 5 * (colour == "blue") + rng.normal(0, 0.5, size=n),
        }
    )
    frame.loc[::17, "x1"] = np.nan
    frame.loc[::23, "colour"] = None
    return frame
