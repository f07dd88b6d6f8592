"""What a worker's training changed in its buffers, and how that change reaches the shared ones.

Buffers (BatchNorm's running statistics) change in the forward passes of training, not through
gradients. A worker takes the change its updates made since it last pulled, and the learner (the
shared module itself in the Hogwild backend, the main process in the Ray backend) applies it to
the shared buffers, without a lock like the parameters' update: two workers writing at the same
moment can lose one's change (a rare, small error in a running statistic).

A BatchNorm running average that took ``k`` batches since the pull went from ``pulled`` to
``local = d * pulled + c``, with ``d = (1 - momentum) ** k`` (``c0 / (c0 + k)`` for the cumulative
average of ``momentum=None``, ``c0`` the count of batches at the pull): the shared one becomes
``d * shared + c``, as if those batches had been averaged into it (exactly, for a momentum; for the
cumulative average, as if no other worker had counted batches meanwhile). Adding the difference
``local - pulled`` instead would subtract a decay computed from the stale pulled value: after
other workers lowered the shared variance meanwhile, it could go negative (NaN in evaluation).
Other buffers (the counts, layers that do not count their batches such as InstanceNorm) get their
difference added.
"""

from collections.abc import Iterable, Sequence

import torch as th

__all__ = ["BufferChanges", "apply_buffer_changes"]

#: One buffer's change: the shared value becomes ``decay * shared + offset``.
BufferChange = tuple[float, th.Tensor]


def _has_running_averages(module: th.nn.Module) -> bool:
    """Whether ``module`` keeps running averages of its batches' statistics and counts the batches (BatchNorm)."""
    return (
        isinstance(module, (th.nn.BatchNorm1d, th.nn.BatchNorm2d, th.nn.BatchNorm3d, th.nn.SyncBatchNorm))
        and module.track_running_stats
    )


class BufferChanges:
    """
    The changes of ``buffers`` (tensors of ``module``) since the last :meth:`mark`.

    :param module: the module that holds the buffers (where their running-average layers are found)
    :param buffers: the buffers to follow, in the order of the shared buffers their changes are applied to
    """

    def __init__(self, module: th.nn.Module, buffers: Iterable[th.Tensor]) -> None:
        self._buffers = [(buffer, buffer.detach().clone()) for buffer in buffers]
        marked = {id(buffer): at_mark for buffer, at_mark in self._buffers}
        # id of a running average -> (momentum or None, its layer's count of batches, that count at the mark)
        self._averages: dict[int, tuple[float | None, th.Tensor, th.Tensor]] = {}
        for layer in module.modules():
            if _has_running_averages(layer) and id(layer.num_batches_tracked) in marked:
                count = (layer.momentum, layer.num_batches_tracked, marked[id(layer.num_batches_tracked)])
                self._averages.update({id(layer.running_mean): count, id(layer.running_var): count})

    @th.no_grad()
    def mark(self) -> None:
        """Remember the buffers' values (after a pull): later changes are counted from here."""
        for buffer, at_mark in self._buffers:
            at_mark.copy_(buffer)

    @th.no_grad()
    def take(self) -> list[BufferChange]:
        """The change of every buffer since the last mark, then mark."""
        changes = []
        for buffer, at_mark in self._buffers:
            average = self._averages.get(id(buffer))
            if average is None:
                changes.append((1.0, buffer - at_mark))
            else:
                momentum, count, count_at_mark = average
                before, after = int(count_at_mark), int(count)
                if momentum is None:  # PyTorch's cumulative average: batch n weighs 1 / n
                    decay = before / after if after > 0 else 1.0
                else:
                    decay = (1.0 - momentum) ** (after - before)
                changes.append((decay, buffer - decay * at_mark))
        self.mark()
        return changes


@th.no_grad()
def apply_buffer_changes(shared: Sequence[th.Tensor], changes: Sequence[BufferChange]) -> None:
    """Apply :meth:`BufferChanges.take`'s changes to the shared buffers, in the same order."""
    for buffer, (decay, offset) in zip(shared, changes, strict=True):
        if decay != 1.0:
            buffer.mul_(decay)
        buffer.add_(offset)
