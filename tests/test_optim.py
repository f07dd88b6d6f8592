import copy

import pytest
import torch as th
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

from sb3_async.common.optim import check_optimizer_class, share_optimizer_state

OPTIMIZERS = [
    (RMSpropTFLike, dict(alpha=0.99, eps=0.1)),
    (RMSpropTFLike, dict(alpha=0.99, eps=1e-5, momentum=0.9, centered=True)),
    (th.optim.RMSprop, dict(alpha=0.99, eps=1e-5)),
    (th.optim.RMSprop, dict(momentum=0.5, centered=True)),
    (th.optim.Adam, dict(eps=1e-5)),
    (th.optim.Adam, dict(amsgrad=True, weight_decay=0.1)),
    (th.optim.AdamW, dict()),
    (th.optim.SGD, dict()),
]


def _model() -> th.nn.Module:
    th.manual_seed(0)
    return th.nn.Sequential(th.nn.Linear(4, 8), th.nn.Tanh(), th.nn.Linear(8, 2))


def _train(model: th.nn.Module, optimizer: th.optim.Optimizer, steps: int = 3) -> None:
    generator = th.Generator().manual_seed(1)
    for _ in range(steps):
        optimizer.zero_grad()
        model(th.randn(16, 4, generator=generator)).pow(2).mean().backward()
        optimizer.step()


@pytest.mark.parametrize("optimizer_class, kwargs", OPTIMIZERS)
def test_eager_state_matches_lazy_state(optimizer_class, kwargs):
    lazy_model = _model()
    eager_model = copy.deepcopy(lazy_model)
    lazy = optimizer_class(lazy_model.parameters(), lr=1e-2, **kwargs)
    eager_model.share_memory()
    eager = optimizer_class(eager_model.parameters(), lr=1e-2, **kwargs)
    share_optimizer_state(eager)

    # Created before any step, and every tensor of it in shared memory.
    for param in eager_model.parameters():
        state = eager.state[param]
        if optimizer_class is not th.optim.SGD:
            assert state, "state was not created eagerly"
        for value in state.values():
            if isinstance(value, th.Tensor):
                assert value.is_shared()

    _train(lazy_model, lazy)
    _train(eager_model, eager)
    for lazy_param, eager_param in zip(lazy_model.parameters(), eager_model.parameters()):
        assert th.equal(lazy_param, eager_param)


def test_share_is_idempotent_and_reshares_loaded_state():
    model = _model()
    model.share_memory()
    optimizer = th.optim.Adam(model.parameters(), lr=1e-3)
    share_optimizer_state(optimizer)
    _train(model, optimizer, steps=1)
    # load_state_dict replaces the state with fresh (private) tensors, as SB3's load does.
    optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    assert not all(v.is_shared() for s in optimizer.state.values() for v in s.values())
    share_optimizer_state(optimizer)
    assert all(v.is_shared() for s in optimizer.state.values() for v in s.values())
    step = next(iter(optimizer.state.values()))["step"]
    assert step.item() == 1.0


def test_adam_step_count_is_shared():
    """Adam's bias correction needs one step count for all workers, not one each."""
    model = _model()
    model.share_memory()
    optimizer = th.optim.Adam(model.parameters(), lr=1e-3)
    share_optimizer_state(optimizer)
    steps = [s["step"] for s in optimizer.state.values()]
    assert all(step.is_shared() for step in steps)


@pytest.mark.parametrize(
    "optimizer_class, kwargs, message",
    [
        (th.optim.Adagrad, None, "cannot share its statistics"),
        (th.optim.SGD, dict(momentum=0.9), "momentum"),
        (th.optim.Adam, dict(fused=True), "fused"),
        ("Adam", None, "cannot share its statistics"),
    ],
)
def test_unsupported_optimizers_are_refused(optimizer_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_optimizer_class(optimizer_class, kwargs)
