"""Device slots of a supervisor and the GPU mask each training process gets."""

from __future__ import annotations

import pytest
import torch

from backend.app.worker import child_environment, parse_devices

GPUS = torch.cuda.device_count()


def test_auto_is_every_visible_gpu_or_the_cpu():
    assert parse_devices("auto") == ([f"cuda:{i}" for i in range(GPUS)] or ["cpu"])
    assert parse_devices(["auto"]) == parse_devices("auto")


@pytest.mark.parametrize(
    ("spec", "slots"), [("cpu", ["cpu"]), (" CPU ", ["cpu"]), (["cpu"], ["cpu"])]
)
def test_cpu(spec, slots):
    assert parse_devices(spec) == slots


@pytest.mark.parametrize("spec", ["", "tpu", "cuda:x", "cuda:-1", "gpu0", f"cuda:{GPUS}"])
def test_unusable_devices_are_refused(spec):
    with pytest.raises(ValueError, match="device"):
        parse_devices(spec)


@pytest.mark.skipif(GPUS < 1, reason="needs a visible GPU")
def test_each_gpu_takes_one_slot():
    assert parse_devices("cuda:0") == ["cuda:0"] == parse_devices("cuda")
    with pytest.raises(ValueError, match="more than once"):
        parse_devices("cuda:0,cuda:0")


def test_a_cpu_slot_hides_every_gpu():
    env, device = child_environment("cpu", {"CUDA_VISIBLE_DEVICES": "0,1", "PATH": "/bin"})
    assert (device, env["CUDA_VISIBLE_DEVICES"], env["PATH"]) == ("cpu", "", "/bin")


@pytest.mark.parametrize(
    ("inherited", "device", "visible"),
    [(None, "cuda:1", "1"), ("4,6", "cuda:1", "6"), ("GPU-aa,GPU-bb", "cuda:0", "GPU-aa")],
)
def test_a_gpu_slot_sees_only_its_gpu_as_cuda0(inherited, device, visible):
    base = {} if inherited is None else {"CUDA_VISIBLE_DEVICES": inherited}
    env, child_device = child_environment(device, base)
    assert (child_device, env["CUDA_VISIBLE_DEVICES"]) == ("cuda:0", visible)
