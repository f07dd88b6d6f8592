"""A worker's private copy of a shared module (the paper's thread-specific parameters θ').

The worker computes gradients on its private copy and applies them to the shared parameters
with the shared optimizer, without a lock (Hogwild). What its update changed in the buffers
(BatchNorm's running statistics) is applied to the shared buffers with the update
(:mod:`sb3_async.common.buffer_changes`).
"""

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch as th
from stable_baselines3.common.policies import BasePolicy

from sb3_async.common.buffer_changes import BufferChanges, apply_buffer_changes
from sb3_async.common.worker import check_finite_gradients

__all__ = ["HogwildOptimizer", "LocalCopy", "distinct_state"]


def distinct_state(module: th.nn.Module) -> list[tuple[str, th.Tensor]]:
    """
    The module's parameters and buffers, each once, with its first name, in ``state_dict`` order:
    what a worker pulls and what travels between learner and workers. SB3's actor-critic policies
    list a shared features extractor under three names (``features_extractor``,
    ``pi_features_extractor``, ``vf_features_extractor``); copying or sending each would triple
    the work.
    """
    seen: set[int] = set()
    tensors = []
    for name, tensor in module.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            tensors.append((name, tensor))
    return tensors


class HogwildOptimizer:
    """
    Stands in for ``policy.optimizer`` inside a worker, so that SB3 training code written for
    one process (``optimizer.zero_grad()``, ``loss.backward()``, ``optimizer.step()``) trains
    the shared model: gradients are computed on the local copy, ``step`` checks that they are
    finite, hands them to the shared optimizer, which updates the shared parameters and its
    shared statistics, adds the update's change of the local buffers to the shared ones, then
    calls ``after_step``.

    :param shared_optimizer: the optimizer over the shared parameters (statistics in shared memory)
    :param local_copy: the worker's local copy, whose gradients and buffers are handed over
    :param after_step: called after every update (the backend's periodic copies)
    """

    def __init__(self, shared_optimizer: th.optim.Optimizer, local_copy: "LocalCopy", after_step: Callable[[], None]) -> None:
        self.shared_optimizer = shared_optimizer
        self._local_copy = local_copy
        self._after_step = after_step

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        # SB3 sets the learning rate of the schedule here; this list is the worker's own copy.
        return self.shared_optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        for local, _, _ in self._local_copy.parameter_pairs:
            local.grad = None

    def step(self, closure: Any = None) -> None:
        pairs = self._local_copy.parameter_pairs
        self._local_copy.check_gradients()
        # Re-alias on every step: backward() made new gradient tensors on the local copy.
        for local, shared, _ in pairs:
            shared.grad = local.grad
        self.shared_optimizer.step()
        for _, shared, _ in pairs:
            shared.grad = None
        self._local_copy.push_buffers()
        self._after_step()

    def state_dict(self) -> dict[str, Any]:
        return self.shared_optimizer.state_dict()


class LocalCopy:
    """
    A private copy of ``shared`` whose optimizer applies the gradients to ``shared``.

    :param shared: policy held in shared memory, with its optimizer as ``shared.optimizer``
    :param keep_shared: names of submodules that are not copied: the local copy reads them
        from shared memory directly (a target network that only periodic copies write)
    :param after_step: called in the worker after each update it applied
    """

    def __init__(
        self, shared: BasePolicy, keep_shared: Iterable[str] = (), after_step: Callable[[], None] = lambda: None
    ) -> None:
        #: The shared policy itself (what the local copy is pulled from).
        self.shared = shared
        keep_shared = list(keep_shared)
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
        # Parameters and buffers to pull before each rollout.
        sync = {
            id(tensor): (local_tensors[name], tensor, name)
            for name, tensor in distinct_state(shared)
            if id(tensor) not in kept_ids
        }
        self._sync = [(local, shared_tensor) for local, shared_tensor, _ in sync.values()]
        parameter_ids = {id(p) for p in shared.parameters()}
        #: ``(local, shared, name)`` for every parameter the optimizer updates.
        self.parameter_pairs = [sync[id(param)] for group in shared_optimizer.param_groups for param in group["params"]]
        # Buffers the local copy changes itself (BatchNorm's running statistics).
        buffer_pairs = [
            (local, shared_tensor) for local, shared_tensor, _ in sync.values() if id(shared_tensor) not in parameter_ids
        ]
        self._shared_buffers = [shared_tensor for _, shared_tensor in buffer_pairs]
        self._buffer_changes = BufferChanges(self.module, [local for local, _ in buffer_pairs])
        self.module.optimizer = HogwildOptimizer(shared_optimizer, self, after_step)  # type: ignore[assignment]

    @th.no_grad()
    def pull(self) -> None:
        """Copy the shared parameters and buffers into the local copy (θ' = θ)."""
        for local, shared in self._sync:
            local.copy_(shared)
        self._buffer_changes.mark()

    def push_buffers(self) -> None:
        """Apply what the local buffers changed since the last push or pull to the shared buffers."""
        apply_buffer_changes(self._shared_buffers, self._buffer_changes.take())

    def check_gradients(self) -> None:
        """Raise :class:`~sb3_async.common.worker.NonFiniteError` if a gradient holds NaN or infinity."""
        check_finite_gradients([(name, local.grad) for local, _, name in self.parameter_pairs if local.grad is not None])
