"""``solve`` against analytic fronts: what each method must (and must not) do on them."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from pmtl_core.cli import app
from pmtl_core.indicators import hypervolume
from pmtl_core.methods import ParetoMTL
from pmtl_core.problems import ConcaveProblem, FunctionProblem, SphereProblem
from pmtl_core.solve import DivergenceError, solve


@pytest.fixture(scope="module")
def concave() -> ConcaveProblem:
    return ConcaveProblem()


def _angles(points: torch.Tensor) -> torch.Tensor:
    return torch.atan2(points[:, 1], points[:, 0])


def _sector_bounds(prefs: torch.Tensor) -> list[tuple[float, float]]:
    """Angular sector of each 2-D preference: halfway to its neighbours."""
    t = _angles(prefs).tolist()
    edges = [0.0] + [(a + b) / 2 for a, b in itertools.pairwise(t)] + [math.pi / 2]
    return list(itertools.pairwise(edges))


def test_pareto_mtl_puts_one_solution_per_sector_on_the_front(concave, device):
    front = solve(concave, "pareto_mtl", 10, steps=1000, lr=0.1, device=device)
    obj = front.objectives
    assert concave.distance_to_front(obj).max() < 1e-3
    angles = _angles(obj).tolist()
    for angle, (low, high) in zip(angles, _sector_bounds(front.preferences), strict=True):
        assert low - 1e-6 <= angle <= high + 1e-6
    # the sector constraints hold: no other preference vector is closer to L than u_k
    g = ParetoMTL(front.preferences).constraints(obj)
    assert float(g.max()) <= 1e-5


def test_linear_scalarisation_leaves_the_concave_middle_empty(concave, device):
    front = solve(concave, "linear", 10, steps=1000, lr=0.1, device=device)
    angles = _angles(front.objectives)
    near_end = (angles < 0.05) | (angles > math.pi / 2 - 0.05)
    assert near_end.all(), f"linear put solutions in the middle: {angles.tolist()}"
    assert (angles < 0.05).any() and (angles > math.pi / 2 - 0.05).any()


def test_mgda_from_random_starts_crowds_together(concave, device):
    front = solve(concave, "mgda", 10, steps=1000, lr=0.1, device=device)
    pmtl = solve(concave, "pareto_mtl", 10, steps=1000, lr=0.1, device=device)
    spread_mgda = float(_angles(front.objectives).std())
    spread_pmtl = float(_angles(pmtl.objectives).std())
    assert concave.distance_to_front(front.objectives).max() < 1e-3  # Pareto stationary…
    assert spread_mgda < 0.25 * spread_pmtl  # …but crowded where the starts led them


def test_epo_lands_on_each_preference_ray(concave, device):
    front = solve(concave, "epo", 10, steps=1000, lr=0.05, device=device)
    err = (_angles(front.objectives) - _angles(front.preferences)).abs()
    assert float(err.max()) < 0.05, err.tolist()
    assert concave.distance_to_front(front.objectives).max() < 1e-3


def test_unbalanced_variant_still_gives_one_solution_per_sector(device):
    problem = ConcaveProblem(scales=(1.0, 10.0), name="concave_unbalanced")
    front = solve(problem, "pareto_mtl", 6, steps=1500, lr=0.02, device=device)
    g = ParetoMTL(front.preferences).constraints(front.objectives)
    assert float(g.max()) <= 1e-5
    assert problem.distance_to_front(front.objectives).max() < 1e-2


@pytest.mark.parametrize(
    ("method", "lr", "steps"), [("pareto_mtl", 0.05, 1000), ("epo", 0.1, 3000)]
)
def test_three_objectives_land_on_the_sphere(method, lr, steps, device):
    problem = SphereProblem()
    front = solve(problem, method, 15, steps=steps, lr=lr, device=device)
    obj = front.objectives
    ref = [1.1, 1.1, 1.1]
    # "on the front": the HV of the solutions matches the HV of their radial projections onto
    # the analytic front (the unit sphere) within 2%
    on_front = obj / obj.norm(dim=1, keepdim=True)
    assert hypervolume(obj, ref) >= 0.98 * hypervolume(on_front, ref)
    if method == "epo":  # and EPO's projections are the points on its rays
        on_rays = problem.front_point_on_ray(front.preferences)
        assert hypervolume(obj, ref) >= 0.98 * hypervolume(on_rays, ref)
    else:
        assert float(ParetoMTL(front.preferences).constraints(obj).max()) <= 1e-4


def test_solve_does_not_modify_its_inputs(concave):
    prefs = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    x0 = torch.zeros(2, concave.dim)
    solve(concave, "linear", prefs.clone(), steps=5, x0=x0)
    assert torch.equal(x0, torch.zeros(2, concave.dim))
    assert torch.equal(prefs, torch.tensor([[1.0, 0.0], [0.6, 0.8]]))


@pytest.mark.parametrize(
    ("prefs", "message"),
    [
        ([[1.0, 0.0, 0.0]], "length 2"),
        ([[float("nan"), 1.0]], "NaN"),
        ([[-1.0, 1.0]], "negative"),
        ([[0.0, 0.0]], "all zeros"),
        (0, "positive integer"),
    ],
)
def test_bad_preferences_get_clear_errors(concave, prefs, message):
    with pytest.raises(ValueError, match=message):
        solve(concave, "pareto_mtl", prefs, steps=1)


def test_nan_objective_stops_with_step_and_objective():
    def fn(x: torch.Tensor) -> torch.Tensor:
        # objective 2 is sqrt(x0): fine while x0 >= 0, NaN once the descent pushes x0 below 0
        return torch.stack([(x**2).sum(), torch.sqrt(x[0])])

    problem = FunctionProblem(fn, dim=2, init_range=(0.5, 0.6))
    with pytest.raises(DivergenceError) as info:
        solve(problem, "linear", [[1.0, 0.0]], steps=200, lr=0.1)  # weights (0, 1): sqrt only
    err = info.value
    assert err.objective == 1
    assert 0 < err.step <= 200
    assert f"at step {err.step}" in str(err) and "objective 2" in str(err)


def test_cli_solve_writes_front_json_and_png(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "solve",
            "--problem",
            "concave",
            "--method",
            "pareto_mtl",
            "--prefs",
            "10",
            "--steps",
            "300",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "front.json").read_text())
    assert len(data["objectives"]) == 10 and len(data["preferences"]) == 10
    png = (tmp_path / "front.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_cli_reports_a_bad_method_readably(tmp_path):
    result = CliRunner().invoke(app, ["solve", "--method", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown method 'nope'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("scales", [(1.0, 1.0), (1.0, 10.0)])
def test_front_point_on_ray_lies_on_the_ray_and_the_front(scales):
    from pmtl_core.problems.synthetic import ConcaveProblem

    problem = ConcaveProblem(scales=scales)
    rays = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 3.0], [3.0, 1.0]])
    points = problem.front_point_on_ray(rays).double()
    unit = rays / rays.norm(dim=1, keepdim=True)
    # parallel to its ray (the cross product vanishes) and on the analytic front
    cross = points[:, 0] * unit[:, 1] - points[:, 1] * unit[:, 0]
    assert float(cross.abs().max()) < 1e-6
    assert float(problem.distance_to_front(points.float()).max()) < 1e-3
    if scales == (1.0, 1.0):  # the symmetric problem meets the diagonal at 1 - exp(-1)
        torch.testing.assert_close(
            points[0], torch.full((2,), 1 - math.exp(-1), dtype=torch.float64)
        )


def test_cli_solve_never_overwrites_an_earlier_result_without_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["solve", "--problem", "concave", "--prefs", "3", "--steps", "20"]
    out = tmp_path / "mine"
    assert CliRunner().invoke(app, [*args, "--out", str(out)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = CliRunner().invoke(app, [*args, "--seed", "1", "--out", str(out)])
    assert again.exit_code == 1
    assert "--overwrite" in again.output and "Traceback" not in again.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    replaced = CliRunner().invoke(app, [*args, "--seed", "1", "--out", str(out), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert (out / "front.json").read_bytes() != before["front.json"]
    # without --out each run gets a new folder, and the command says which
    outputs = [CliRunner().invoke(app, args) for _ in range(2)]
    assert all(r.exit_code == 0 for r in outputs), [r.output for r in outputs]
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(f.name.startswith("concave-pareto_mtl-") for f in folders)
    for folder, result in zip(folders, outputs, strict=True):
        assert sorted(p.name for p in folder.iterdir()) == ["front.json", "front.png"]
        assert f"runs/{folder.name}/front.json" in result.output
