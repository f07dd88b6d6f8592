"""Optimizers whose statistics are shared by every worker process.

PyTorch optimizers create their per-parameter state lazily, on the first ``step()``. In a
forked worker that first step would build the state in the worker's private memory, so each
worker would keep its own statistics (and Adam its own step count) instead of the shared ones
of the paper. :func:`share_optimizer_state` therefore creates the state eagerly, exactly as the
optimizer would on its first step, and moves every state tensor into shared memory.
"""

from collections.abc import Callable
from typing import Any

import torch as th
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

__all__ = ["SUPPORTED_OPTIMIZERS", "check_optimizer_class", "share_optimizer_state"]


def _zeros(param: th.Tensor) -> th.Tensor:
    return th.zeros_like(param, memory_format=th.preserve_format)


def _scalar_step() -> th.Tensor:
    # torch keeps `step` as a CPU scalar tensor of the default float dtype when neither
    # `capturable` nor `fused` is set; a tensor (unlike an int) can live in shared memory.
    return th.tensor(0.0, dtype=th.get_default_dtype())


def _adam_state(param: th.Tensor, group: dict[str, Any]) -> dict[str, Any]:
    state = {"step": _scalar_step(), "exp_avg": _zeros(param), "exp_avg_sq": _zeros(param)}
    if group.get("amsgrad", False):
        state["max_exp_avg_sq"] = _zeros(param)
    return state


def _rmsprop_state(param: th.Tensor, group: dict[str, Any], square_avg_init: float) -> dict[str, Any]:
    state: dict[str, Any] = {"square_avg": th.full_like(param, square_avg_init, memory_format=th.preserve_format)}
    if group.get("momentum", 0) > 0:
        state["momentum_buffer"] = _zeros(param)
    if group.get("centered", False):
        state["grad_avg"] = _zeros(param)
    return state


def _torch_rmsprop_state(param: th.Tensor, group: dict[str, Any]) -> dict[str, Any]:
    return {"step": _scalar_step(), **_rmsprop_state(param, group, square_avg_init=0.0)}


def _tf_rmsprop_state(param: th.Tensor, group: dict[str, Any]) -> dict[str, Any]:
    # RMSpropTFLike counts steps in a Python int that it never reads, and starts the
    # squared-gradient average at one, as TensorFlow does.
    return {"step": 0, **_rmsprop_state(param, group, square_avg_init=1.0)}


def _sgd_state(param: th.Tensor, group: dict[str, Any]) -> dict[str, Any]:
    return {}


# Exact classes, not subclasses: a subclass may keep state these initializers do not know of.
SUPPORTED_OPTIMIZERS: dict[type[th.optim.Optimizer], Callable[[th.Tensor, dict[str, Any]], dict[str, Any]]] = {
    RMSpropTFLike: _tf_rmsprop_state,
    th.optim.RMSprop: _torch_rmsprop_state,
    th.optim.Adam: _adam_state,
    th.optim.AdamW: _adam_state,
    th.optim.SGD: _sgd_state,
}


def check_optimizer_class(optimizer_class: Any, optimizer_kwargs: dict[str, Any] | None = None) -> None:
    """
    Raise a ``ValueError`` unless the optimizer's statistics can be shared between workers.

    :param optimizer_class: the class given in ``policy_kwargs["optimizer_class"]``
    :param optimizer_kwargs: the keyword arguments given in ``policy_kwargs["optimizer_kwargs"]``
    """
    names = ", ".join(sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in SUPPORTED_OPTIMIZERS))
    if optimizer_class not in SUPPORTED_OPTIMIZERS:
        raise ValueError(
            f"policy_kwargs['optimizer_class']={optimizer_class!r} cannot share its statistics between workers; "
            f"expected one of: {names}"
        )
    kwargs = optimizer_kwargs or {}
    if optimizer_class is th.optim.SGD and kwargs.get("momentum", 0) != 0:
        raise ValueError(
            "policy_kwargs['optimizer_kwargs']['momentum'] must be 0 for SGD: its momentum buffer is created lazily"
        )
    for flag in ("fused", "capturable", "differentiable"):
        if kwargs.get(flag):
            raise ValueError(f"policy_kwargs['optimizer_kwargs']['{flag}']=True is not supported with shared statistics")


def share_optimizer_state(optimizer: th.optim.Optimizer) -> None:
    """
    Create the optimizer's state eagerly (where missing) and move all of it to shared memory.

    Idempotent: state that already exists is kept (e.g. after ``load``) and only moved.
    Raises ``RuntimeError`` if any state tensor is not shared afterwards.

    :param optimizer: an optimizer over parameters that are already in shared memory
    """
    init_state = SUPPORTED_OPTIMIZERS.get(type(optimizer))
    if init_state is None:
        check_optimizer_class(type(optimizer))
    assert init_state is not None
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state[param]
            if len(state) == 0:
                state.update(init_state(param, group))
            for value in state.values():
                if isinstance(value, th.Tensor):
                    value.share_memory_()
    not_shared = [
        key
        for state in optimizer.state.values()
        for key, value in state.items()
        if isinstance(value, th.Tensor) and not value.is_shared()
    ]
    if not_shared:
        raise RuntimeError(f"Optimizer state {sorted(set(not_shared))} could not be moved to shared memory")
