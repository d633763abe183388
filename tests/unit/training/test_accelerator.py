"""training/accelerator.py: the loop always has an accelerator. SingleProcess, the stand-in for one
process, must train exactly like a plain PyTorch step, and its GradScaler only acts for fp16."""

from __future__ import annotations

import torch

from bertdemo.training.accelerator import SingleProcess, any_process, gather_objects, make_accelerator, shard_batches


def _model_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    return model, x, y


def _steps(model, x, y, opt, step, n=3):
    for _ in range(n):
        opt.zero_grad(set_to_none=True)
        step(torch.nn.functional.cross_entropy(model(x), y))
    return [p.detach().clone() for p in model.parameters()]


def test_single_process_steps_exactly_like_plain_pytorch():
    model, x, y = _model_and_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)

    def plain(loss):
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 0.5)
        opt.step()

    want = _steps(model, x, y, opt, plain)

    model, x, y = _model_and_batch()
    acc = SingleProcess(torch.device("cpu"), amp_dtype=None)
    net, opt2, _sched = acc.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-2), None)
    assert net is model and not acc.scaler.is_enabled()  # fp32: the scaler does nothing

    def stand_in(loss):
        acc.backward(loss)
        acc.clip_grad_norm_(list(model.parameters()), 0.5)
        opt2.step()

    got = _steps(model, x, y, opt2, stand_in)
    assert all(torch.equal(a, b) for a, b in zip(want, got))


def test_the_scaler_is_enabled_only_for_fp16_and_the_rest_is_identity():
    assert SingleProcess(torch.device("cpu"), torch.float16).scaler.is_enabled()
    acc = SingleProcess(torch.device("cpu"), torch.bfloat16)
    assert not acc.scaler.is_enabled()
    with acc.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    t = torch.tensor([2.0])
    assert acc.reduce(t, "mean") is t and acc.unwrap_model(t) is t
    assert gather_objects(acc, [1, 2]) == [1, 2] and any_process(acc, True) and not any_process(acc, False)


def test_a_plain_process_gets_the_stand_in_without_importing_accelerate():
    acc = make_accelerator(torch.device("cpu"), None)
    assert isinstance(acc, SingleProcess) and (acc.process_index, acc.num_processes) == (0, 1)


def test_shards_are_disjoint_and_equal_in_length():
    batches = [[i] for i in range(7)]
    assert shard_batches(batches, 0, 1) is batches
    shards = [shard_batches(batches, r, 3) for r in range(3)]
    assert {len(s) for s in shards} == {3}
    assert {b[0] for s in shards for b in s} == set(range(7))  # every batch is trained, the order cycled to 9
