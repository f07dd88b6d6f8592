"""A worker's private copy of a shared module (the paper's thread-specific parameters θ').

The worker computes gradients on its private copy and applies them to the shared parameters
with the shared optimizer, without a lock (Hogwild).
"""

import copy
from collections.abc import Iterable
from typing import Any

import torch as th
from stable_baselines3.common.policies import BasePolicy
from torch import nn

__all__ = ["HogwildOptimizer", "LocalCopy"]


class HogwildOptimizer:
    """
    Stands in for ``policy.optimizer`` inside a worker, so that SB3 training code written for
    one process (``optimizer.zero_grad()``, ``loss.backward()``, ``optimizer.step()``) trains
    the shared model: gradients are computed on the local copy, ``step`` hands them to the
    shared optimizer, which updates the shared parameters and its shared statistics.

    :param shared_optimizer: the optimizer over the shared parameters (statistics in shared memory)
    :param pairs: ``(local_parameter, shared_parameter)`` for every parameter of the optimizer
    """

    def __init__(self, shared_optimizer: th.optim.Optimizer, pairs: list[tuple[nn.Parameter, nn.Parameter]]) -> None:
        self.shared_optimizer = shared_optimizer
        self._pairs = pairs

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        # SB3 sets the learning rate of the schedule here; this list is the worker's own copy.
        return self.shared_optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        for local, _ in self._pairs:
            local.grad = None

    def step(self, closure: Any = None) -> None:
        # Re-alias on every step: backward() made new gradient tensors on the local copy.
        for local, shared in self._pairs:
            shared.grad = local.grad
        self.shared_optimizer.step()
        for _, shared in self._pairs:
            shared.grad = None

    def state_dict(self) -> dict[str, Any]:
        return self.shared_optimizer.state_dict()


class LocalCopy:
    """
    A private copy of ``shared`` whose optimizer applies the gradients to ``shared``.

    :param shared: policy held in shared memory, with its optimizer as ``shared.optimizer``
    :param keep_shared: names of submodules that are not copied: the local copy reads them
        from shared memory directly (e.g. a target network that only the main copy writes)
    """

    def __init__(self, shared: BasePolicy, keep_shared: Iterable[str] = ()) -> None:
        #: The shared policy itself (what the local copy is pulled from).
        self.shared = shared
        shared_optimizer = shared.optimizer
        # The memo keeps out of the deep copy: the optimizer (replaced below), the submodules
        # read from shared memory, and the action distribution, whose sampled tensors (gSDE's
        # exploration matrix) are not graph leaves and cannot be deep-copied; the policy only
        # ever replaces them, so a shallow copy is a private one.
        memo: dict[int, Any] = {id(shared_optimizer): None}
        if hasattr(shared, "action_dist"):
            memo[id(shared.action_dist)] = copy.copy(shared.action_dist)
        for name in keep_shared:
            submodule = shared.get_submodule(name)
            memo[id(submodule)] = submodule
        self.module = copy.deepcopy(shared, memo)
        kept_ids = {id(t) for name in keep_shared for t in shared.get_submodule(name).state_dict(keep_vars=True).values()}
        local_tensors = self.module.state_dict(keep_vars=True)
        # Parameters and buffers to pull before each rollout; a module reachable under several
        # names (SB3's shared features extractor) is pulled once.
        sync: dict[int, tuple[th.Tensor, th.Tensor]] = {}
        for name, tensor in shared.state_dict(keep_vars=True).items():
            if id(tensor) not in kept_ids:
                sync[id(tensor)] = (local_tensors[name], tensor)
        self._sync = list(sync.values())
        pairs = [(sync[id(param)][0], param) for group in shared_optimizer.param_groups for param in group["params"]]
        self.module.optimizer = HogwildOptimizer(shared_optimizer, pairs)  # type: ignore[assignment]

    @th.no_grad()
    def pull(self) -> None:
        """Copy the shared parameters into the local copy (θ' = θ)."""
        for local, shared in self._sync:
            local.copy_(shared)
