"""The training engine: stacking is exact, resume is bit-identical, faults stay contained."""

from __future__ import annotations

import pytest
import torch

from pmtl_core import checkpoints
from pmtl_core.engine import TrainingStopped, train
from pmtl_core.export import export_model, load_model
from pmtl_core.methods import get_method
from pmtl_core.models import build_model
from pmtl_core.preferences import uniform
from pmtl_core.problems import FunctionProblem
from tests.pmtl_core._problems import TwoTaskBlobs

CFG = {"epochs": 2, "batch_size": 32, "lr": 0.05, "momentum": 0.9, "lr_step": 1, "lr_gamma": 0.5}


def _cfg(device, **over):
    return {**CFG, "device": str(device), **over}


def _reference_training(problem, method_name, prefs, cfg, device):
    """Independent reference: K plain nn.Modules trained one after another, per-task gradients
    by autograd per model, the same method for the weights, one SGD optimiser each."""
    torch.manual_seed(cfg.get("seed", 0))
    k = prefs.shape[0]
    models = [problem.build_model().to(device) for _ in range(k)]
    data = problem.load(device)
    method = get_method(method_name)(prefs.to(device))
    batches = -(-problem.load(device).train.inputs.shape[0] // cfg["batch_size"])
    method.bind(steps_per_epoch=batches, total_steps=cfg["epochs"] * batches, dataset=True)
    opts = [torch.optim.SGD(m.parameters(), lr=cfg["lr"], momentum=cfg["momentum"]) for m in models]
    scheds = [torch.optim.lr_scheduler.StepLR(o, cfg["lr_step"], cfg["lr_gamma"]) for o in opts]
    gen = torch.Generator().manual_seed(cfg.get("seed", 0))
    n, bs = data.train.inputs.shape[0], cfg["batch_size"]
    for _ in range(cfg["epochs"]):
        perm = torch.randperm(n, generator=gen).to(device)
        for b in range(-(-n // bs)):
            idx = perm[b * bs : (b + 1) * bs]
            x, y = problem.transform(data.train.inputs[idx]), data.train.targets[idx]
            losses, grams, grads = [], [], []
            for model in models:
                _, outs = model(x)
                loss = problem.task_losses(outs, y)
                per_task = [
                    torch.autograd.grad(
                        loss[t], list(model.parameters()), retain_graph=True, allow_unused=True
                    )
                    for t in range(2)
                ]
                # the Gram covers the encoder, or every parameter (heads too) for Pareto MTL
                params = list(model.named_parameters())
                covered = [
                    i
                    for i, (name, _) in enumerate(params)
                    if method.gram_params == "all" or name.startswith("encoder.")
                ]
                flat = torch.stack(
                    [
                        torch.cat(
                            [
                                (
                                    g[i] if g[i] is not None else torch.zeros_like(params[i][1])
                                ).flatten()
                                for i in covered
                            ]
                        )
                        for g in per_task
                    ]
                )
                losses.append(loss.detach())
                grams.append(flat @ flat.T)
                grads.append(per_task)
            alpha = method(torch.stack(losses), torch.stack(grams))
            for k_, (model, opt) in enumerate(zip(models, opts, strict=True)):
                opt.zero_grad()
                for j, p in enumerate(model.parameters()):
                    parts = [
                        alpha[k_, t] * grads[k_][t][j]
                        for t in range(2)
                        if grads[k_][t][j] is not None
                    ]
                    p.grad = sum(parts)
                opt.step()
        for s in scheds:
            s.step()
    return models


@pytest.mark.parametrize("method", ["linear", "pareto_mtl", "mgda"])
def test_stacked_engine_matches_independent_reference_training(method, device):
    problem = TwoTaskBlobs()
    prefs = uniform(2, 3)
    cfg = _cfg(device)
    front = train(problem, method, prefs, cfg)
    reference = _reference_training(problem, method, prefs, cfg, device)
    for k, model in enumerate(reference):
        for name, p in model.named_parameters():
            torch.testing.assert_close(
                front.params[name][k].to(device), p.detach(), atol=2e-5, rtol=1e-4
            )


def test_representation_gram_equals_per_model_autograd(device):
    from pmtl_core.engine.stacked import StackedModels

    problem = TwoTaskBlobs()
    torch.manual_seed(0)
    models = [problem.build_model() for _ in range(3)]
    stack = StackedModels(models, device)
    data = problem.load(device)
    x, y = data.train.inputs[:16], data.train.targets[:16]
    z = stack.encode(x)
    losses = torch.func.vmap(lambda o: problem.task_losses(o, y))(stack.heads(z))
    gram = stack.task_grams_representation(losses, z)
    for k, model in enumerate(models):
        model = model.to(device)
        zk = model.encoder(x)
        lk = problem.task_losses([h(zk) for h in model.heads], y)
        g = torch.stack(
            [torch.autograd.grad(lk[t], zk, retain_graph=True)[0].flatten() for t in range(2)]
        )
        torch.testing.assert_close(gram[k], g @ g.T, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", ["pareto_mtl", "mt2o", "uncertainty"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(method, tmp_path, device):
    if device.type != "cpu":
        pytest.skip("bit-identical resume is promised on CPU with a fixed seed")
    problem = TwoTaskBlobs()
    cfg = _cfg(device, epochs=4)
    full = train(problem, method, 3, cfg, checkpoint_dir=tmp_path / "full")

    epochs_seen = []

    class StopAfterTwo:
        def on_epoch(self, record):
            epochs_seen.append(record.epoch)

    with pytest.raises(TrainingStopped):
        train(
            problem,
            method,
            3,
            cfg,
            checkpoint_dir=tmp_path / "cut",
            callbacks=[StopAfterTwo()],
            should_stop=lambda: len(epochs_seen) >= 2,
        )
    assert checkpoints.latest(tmp_path / "cut").name == "ckpt-epoch0002.pt"
    resumed_epochs = []

    class Record:
        def on_epoch(self, record):
            resumed_epochs.append(record.epoch)

    resumed = train(
        problem, method, 3, cfg, checkpoint_dir=tmp_path / "cut", resume=True, callbacks=[Record()]
    )
    assert resumed_epochs == [3, 4]
    for name, value in full.params.items():
        assert torch.equal(value, resumed.params[name]), name
    assert torch.equal(full.history, resumed.history)


def test_a_diverging_subproblem_is_frozen_and_reported(device):
    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([(x**2).sum(), torch.sqrt(x[0])])

    problem = FunctionProblem(fn, dim=2, init_range=(0.5, 0.6), name="sqrt")
    events = []

    class Catch:
        def on_divergence(self, event):
            events.append(event)

    # preference (1, 0) trains on sqrt(x0) alone and overshoots below 0; (0, 1) is harmless
    front = train(
        problem,
        "linear",
        [[1.0, 0.0], [0.0, 1.0]],
        {"epochs": 5, "steps_per_epoch": 40, "lr": 0.1, "momentum": 0.0, "device": str(device)},
        callbacks=[Catch()],
    )
    assert [e.index for e in events] == [0]
    assert events[0].preference == [1.0, 0.0] and events[0].epoch >= 1
    assert "diverged in epoch" in events[0].message
    assert front.failed.tolist() == [True, False]
    assert torch.isfinite(front.objectives[1]).all()
    assert front.objectives[1, 0] < 1e-3  # the healthy one kept training to its optimum


def test_callbacks_see_every_epoch_split_and_preference(tmp_path, device):
    problem = TwoTaskBlobs()
    seen = {"start": 0, "epochs": [], "checkpoints": [], "end": 0, "progress": 0}

    class Spy:
        def on_start(self, info):
            seen["start"] += 1
            assert info.n_subproblems == 4 and info.task_names == ("first", "second")

        def on_progress(self, epoch, batch, n_batches):
            seen["progress"] += 1

        def on_epoch(self, record):
            seen["epochs"].append(record)

        def on_checkpoint(self, path, epoch):
            seen["checkpoints"].append((path.name, epoch))

        def on_end(self, front):
            seen["end"] += 1

    train(
        problem, "pareto_mtl", 4, _cfg(device, epochs=3), callbacks=[Spy()], checkpoint_dir=tmp_path
    )
    assert seen["start"] == 1 and seen["end"] == 1
    assert seen["progress"] == 3 * 8
    assert [r.epoch for r in seen["epochs"]] == [1, 2, 3]
    record = seen["epochs"][-1]
    assert {(p.index, p.split) for p in record.points} == {
        (k, s) for k in range(4) for s in ("train", "test")
    }
    for p in record.points:
        assert len(p.losses) == 2 and all(0.0 <= a <= 1.0 for a in p.metrics["accuracy"])
    assert seen["checkpoints"][-1] == ("ckpt-epoch0003.pt", 3)
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path)] == [
        "ckpt-epoch0002.pt",
        "ckpt-epoch0003.pt",
    ]  # keep_checkpoints = 2


def test_training_reduces_the_loss_of_every_model(device):
    problem = TwoTaskBlobs(n_train=512)
    front = train(problem, "pareto_mtl", 3, _cfg(device, epochs=6, lr=0.1, lr_step=0))
    first, last = front.history[0], front.history[-1]
    assert (last < first).all()
    assert front.test_objectives is not None and front.test_objectives.shape == (3, 2)


def test_warm_start_copies_the_neighbour_model(tmp_path, device):
    problem = TwoTaskBlobs()
    train(problem, "linear", 3, _cfg(device), checkpoint_dir=tmp_path / "a")
    source = checkpoints.latest(tmp_path / "a")
    front = train(
        problem, "linear", [[0.3, 0.7]], _cfg(device, epochs=1, lr=1e-12), init_from=[(source, 1)]
    )
    state = checkpoints.load(source)
    for name, value in front.params.items():
        torch.testing.assert_close(value[0], state["trainer"]["params"][name][1], atol=1e-9, rtol=0)


def test_export_round_trip_gives_the_same_outputs(tmp_path, device):
    problem = TwoTaskBlobs()
    train(problem, "pareto_mtl", 3, _cfg(device), checkpoint_dir=tmp_path / "ck")
    ckpt = checkpoints.latest(tmp_path / "ck")
    config_path, weights = export_model(ckpt, 2, tmp_path / "out")
    model = load_model(config_path, weights)
    reference = build_model(problem.model_config())
    state = checkpoints.load(ckpt)["trainer"]["params"]
    reference.load_state_dict({n: t[2] for n, t in state.items()})
    x = problem.load("cpu").test.inputs
    torch.testing.assert_close(model(x)[1][0], reference(x)[1][0])
    from_bytes = load_model(config_path, weights.read_bytes())
    torch.testing.assert_close(from_bytes(x)[0], model(x)[0])


def test_mgda_ub_gradient_memory_does_not_grow_with_the_encoder(monkeypatch, device):
    """The task gradients MGDA-UB materialises are w.r.t. the representation (K x B x 50), the
    same for a 1x and a 4x wide LeNet; the exact variant's grow with the encoder."""
    real_grad = torch.autograd.grad
    sizes: list[int] = []

    def counting_grad(*args, **kwargs):
        out = real_grad(*args, **kwargs)
        sizes.append(sum(t.numel() for t in out if t is not None))
        return out

    def gradient_numel(method: str, width: float) -> int:
        sizes.clear()
        monkeypatch.setattr(torch.autograd, "grad", counting_grad)
        try:
            train(
                TwoTaskBlobs(n_train=16, n_test=4, image=True, width=width),
                method,
                2,
                _cfg(device, epochs=1, batch_size=16),
            )
        finally:
            monkeypatch.setattr(torch.autograd, "grad", real_grad)
        return sum(sizes)

    assert gradient_numel("mgda_ub", 1.0) == gradient_numel("mgda_ub", 4.0)
    assert gradient_numel("pareto_mtl", 4.0) > 4 * gradient_numel("pareto_mtl", 1.0) / 2


def test_loop_and_vmap_encoders_give_the_same_losses_and_gradients(device):
    """The per-model loop (CPU default) and vmap (GPU default) are two evaluations of one model."""
    from pmtl_core.engine.stacked import StackedModels

    problem = TwoTaskBlobs(image=True)
    data = problem.load(device)
    x, y = data.train.inputs[:16], data.train.targets[:16]
    results = {}
    for strategy in ("loop", "vmap"):
        torch.manual_seed(0)
        stack = StackedModels([problem.build_model() for _ in range(3)], device, strategy)
        assert stack.encoder_strategy == strategy
        losses = torch.func.vmap(lambda o: problem.task_losses(o, y))(
            stack.heads(stack.encode(problem.transform(x)))
        )
        gram, grads = stack.task_grams_exact(losses)
        results[strategy] = (losses.detach(), gram, [g for g in grads[0] if g is not None])
    (l1, g1, d1), (l2, g2, d2) = results["loop"], results["vmap"]
    torch.testing.assert_close(l1, l2, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g1, g2, atol=1e-6, rtol=1e-4)
    for a, b in zip(d1, d2, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    with pytest.raises(ValueError, match="encoder strategy"):
        StackedModels([problem.build_model()], device, "grouped")


def test_mt2o_models_start_from_one_initialisation(device):
    problem = TwoTaskBlobs()
    front = train(problem, "mt2o", 4, _cfg(device, epochs=1), params={"transfer": 0.0})
    # without transfer the four subproblems drift apart from one start; with independent
    # starts (linear) the encoders differ from the first step on
    from pmtl_core.config import make_config
    from pmtl_core.engine import DatasetLoop

    cfg = make_config(_cfg(device, epochs=1))
    for name, same in (("mt2o", True), ("linear", False)):
        torch.manual_seed(0)
        trainer = DatasetLoop(problem, get_method(name)(uniform(2, 4)), cfg, device)
        for p in trainer.stack.params.values():
            assert bool((p == p[:1]).all()) is same
    assert torch.isfinite(front.objectives).all()


def test_mt2o_transfer_blends_parameters_and_momentum_before_each_step(device):
    """One MT2O iteration is theta <- M theta - lr * (mu * M v + g): parameters and the SGD
    momentum are blended with the same M, then the gradients taken at the old theta apply."""
    problem = TwoTaskBlobs(n_train=64)
    cfg = _cfg(device, epochs=10, batch_size=64, lr=0.1, momentum=0.9, lr_step=0)
    from pmtl_core.config import make_config
    from pmtl_core.engine import DatasetLoop

    torch.manual_seed(0)
    method = get_method("mt2o")(uniform(2, 3).to(device), {"transfer": 0.5})
    trainer = DatasetLoop(problem, method, make_config(cfg), device)
    with torch.no_grad():  # give the models different parameters and a momentum history
        for p in trainer.stack.params.values():
            p.add_(torch.randn_like(p) * 0.1)
    alive = torch.ones(3, dtype=torch.bool, device=device)
    gen = torch.Generator().manual_seed(0)
    trainer.train_epoch(1, gen, alive, lambda *_: None)  # one batch: builds the momentum
    before = {n: p.detach().clone() for n, p in trainer.stack.params.items()}
    momentum = {
        n: trainer.optimizer.state[p]["momentum_buffer"].clone()
        for n, p in trainer.stack.params.items()
    }
    # the gradients this step will take, at the old parameters
    data = trainer.data.train
    replay = torch.Generator()
    replay.set_state(gen.get_state())
    perm = torch.randperm(64, generator=replay).to(device)
    x, y = data.inputs[perm], data.targets[perm]
    losses, _, _ = trainer._forward(x, y)
    alpha = method(losses.detach(), None)
    trainer.optimizer.zero_grad(set_to_none=True)
    (alpha * losses).sum().backward()
    grads = {n: p.grad.clone() for n, p in trainer.stack.params.items()}
    mixing = method.mixing(trainer.global_step, trainer.total_steps)
    assert mixing is not None
    trainer.train_epoch(2, gen, alive, lambda *_: None)
    for n, p in trainer.stack.params.items():
        blend = torch.einsum("kj,j...->k...", mixing.to(p), before[n])
        v = 0.9 * torch.einsum("kj,j...->k...", mixing.to(p), momentum[n]) + grads[n]
        torch.testing.assert_close(p.detach(), blend - 0.1 * v, atol=1e-5, rtol=1e-4)


def _concave_cfg(epochs, **over):
    return {
        "epochs": epochs,
        "steps_per_epoch": 2,
        "device": "cpu",
        "keep_checkpoints": 1000,
        **over,
    }


def test_checkpoint_size_does_not_grow_with_the_number_of_epochs(tmp_path):
    train("concave", "pareto_mtl", 3, _concave_cfg(20), checkpoint_dir=tmp_path)
    files = checkpoints.list_checkpoints(tmp_path)
    assert len(files) == 20
    sizes = [p.stat().st_size for p in files]
    # Same tensors every epoch; only a few pickled integers may change their width.
    assert abs(sizes[19] - sizes[1]) <= 16, sizes


def test_resumed_front_history_equals_the_uninterrupted_one(tmp_path):
    full = train("concave", "pareto_mtl", 3, _concave_cfg(12), checkpoint_dir=tmp_path / "full")
    seen = []

    class Count:
        def on_epoch(self, record):
            seen.append(record.epoch)

    with pytest.raises(TrainingStopped):
        train(
            "concave",
            "pareto_mtl",
            3,
            _concave_cfg(12, checkpoint_every=3),
            checkpoint_dir=tmp_path / "cut",
            callbacks=[Count()],
            should_stop=lambda: len(seen) >= 8,  # stops in epoch 9; newest checkpoint: 6
        )
    assert checkpoints.latest(tmp_path / "cut").name == "ckpt-epoch0006.pt"
    resumed = train(
        "concave",
        "pareto_mtl",
        3,
        _concave_cfg(12, checkpoint_every=3),
        checkpoint_dir=tmp_path / "cut",
        resume=True,
    )
    assert full.history.shape[0] == 12
    assert torch.equal(full.history, resumed.history)
    assert torch.equal(full.objectives, resumed.objectives)
    # The history file holds exactly the run's epochs, once each (epochs 7-8 were replayed).
    again = checkpoints.read_history(tmp_path / "cut", 12)
    assert torch.equal(torch.stack(again["train"]), full.history)
    lines = (tmp_path / "cut" / checkpoints.HISTORY_FILE).read_text().splitlines()
    assert len(lines) == 12


def test_a_checkpoint_that_carries_the_whole_history_still_resumes(tmp_path):
    full = train("concave", "pareto_mtl", 3, _concave_cfg(6), checkpoint_dir=tmp_path / "full")
    # A checkpoint of the earlier format: the history inside, no history file next to it.
    state = checkpoints.load(tmp_path / "full" / "ckpt-epoch0004.pt")
    state.pop("history_file")
    state["history"] = {"train": list(full.history[:4]), "test": []}
    old = tmp_path / "old"
    old.mkdir()
    torch.save(state, old / "ckpt-epoch0004.pt")
    resumed = train("concave", "pareto_mtl", 3, _concave_cfg(6), checkpoint_dir=old, resume=True)
    assert torch.equal(full.history, resumed.history)
    # A resumed run's own checkpoints use the history file from then on.
    assert torch.equal(torch.stack(checkpoints.read_history(old, 6)["train"]), full.history)


def test_a_resume_without_its_history_says_what_is_missing(tmp_path):
    train("concave", "pareto_mtl", 2, _concave_cfg(3), checkpoint_dir=tmp_path)
    (tmp_path / checkpoints.HISTORY_FILE).write_text("")
    with pytest.raises(checkpoints.CheckpointError, match=r"lacks epoch\(s\) \[1, 2, 3\]"):
        train("concave", "pareto_mtl", 2, _concave_cfg(3), checkpoint_dir=tmp_path, resume=True)


def test_train_can_leave_checkpoint_pruning_to_its_caller(tmp_path):
    train(
        "concave", "linear", 2, _concave_cfg(4, keep_checkpoints=2), checkpoint_dir=tmp_path / "a"
    )
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path / "a")] == [
        "ckpt-epoch0003.pt",
        "ckpt-epoch0004.pt",
    ]
    train(
        "concave",
        "linear",
        2,
        _concave_cfg(4, keep_checkpoints=2),
        checkpoint_dir=tmp_path / "b",
        prune=False,
    )
    assert len(checkpoints.list_checkpoints(tmp_path / "b")) == 4
