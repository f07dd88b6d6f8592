"""What the Ray backend costs per update: bytes moved, and how many updates one learner can apply.

Two measurements, for a zoo entry's network:

- ``--seconds`` of training with ``backend="ray"`` on this machine (a local Ray runtime), reading
  the learner's own counters: updates applied, gradient bytes received and parameter bytes sent
  per update, the learner's seconds per update (applying a gradient: optimizer step, buffers,
  target copies), and the staleness of the gradients;
- the learner alone, without workers: the time to apply one gradient and to publish the new
  parameters (``ray.put``), in a loop: the most updates per second one learner process can take.

    python -m benchmarks.ray_costs --env CartPole-v1 --algo a3c --seconds 30
    python -m benchmarks.ray_costs --env PongNoFrameskip-v4 --algo a3c --seconds 60

The throughput against the local backend is ``python -m benchmarks.throughput --configs a3c,a3c@ray``.
"""

import argparse
import json
import tempfile
import time
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from benchmarks.cli import at_least, positive
from benchmarks.configs import experiment
from sb3_async.common.local_copy import distinct_state


def _group_counters(model: Any, seconds: float) -> dict[str, Any]:
    counters: dict[str, Any] = {}

    class Read(BaseCallback):
        # From the first step: starting the actors is not counted.
        start: float | None = None

        def _on_step(self) -> bool:
            group = self.model._worker_group
            if self.start is None:
                self.start = time.perf_counter()
                self.first = dict(n_applied=group.n_applied, apply_seconds=group.apply_seconds, steps=self.num_timesteps)
            counters.update(
                n_applied=group.n_applied - self.first["n_applied"],
                bytes_in=group.bytes_in,
                bytes_out=group.bytes_out,
                total_applied=group.n_applied,
                apply_seconds=group.apply_seconds - self.first["apply_seconds"],
                steps=self.num_timesteps - self.first["steps"],
                seconds=time.perf_counter() - self.start,
            )
            return time.perf_counter() - self.start < seconds

    model.learn(10**9, callback=Read())
    return counters


def learner_alone(model: Any, repeats: int = 200) -> dict[str, float]:
    """Seconds to apply one gradient, and to publish parameters with ``ray.put``, on this process's learner."""
    import ray

    policy = model.policy
    parameters = [p for group in policy.optimizer.param_groups for p in group["params"]]
    grads = [np.random.default_rng(0).standard_normal(p.shape).astype(np.float32) * 1e-3 for p in parameters]
    state = [tensor for _, tensor in distinct_state(policy)]
    th.set_num_threads(1)
    start = time.perf_counter()
    for _ in range(repeats):
        for param, grad in zip(parameters, grads):
            param.grad = th.from_numpy(grad)
        policy.optimizer.step()
    apply = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        ray.put([t.detach().numpy().copy() for t in state])
    publish = (time.perf_counter() - start) / repeats
    return dict(apply_seconds=apply, publish_seconds=publish, params_bytes=float(sum(t.numel() * 4 for t in state)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--algo", default="a3c")
    parser.add_argument("--seconds", type=positive, default=30.0)
    parser.add_argument("--workers", type=at_least(1), default=2)
    args = parser.parse_args()
    import ray

    ray.init(include_dashboard=False, logging_level="ERROR")
    with tempfile.TemporaryDirectory() as folder:
        manager = experiment(args.algo, args.env, 0, 10**9, folder, {"backend": "ray", "n_workers": args.workers})
        model, _ = manager.setup_experiment()
        counters = _group_counters(model, args.seconds)
        alone = learner_alone(model)
    n = max(counters["n_applied"], 1)
    total = max(counters["total_applied"], 1)
    result = dict(
        algo=args.algo,
        env=args.env,
        workers=args.workers,
        steps_per_s=counters["steps"] / counters["seconds"],
        updates_per_s=counters["n_applied"] / counters["seconds"],
        gradient_bytes_per_update=counters["bytes_in"] / total,
        parameter_bytes_per_update=counters["bytes_out"] / total,
        learner_seconds_per_update_in_training=counters["apply_seconds"] / n,
        learner_busy_share=counters["apply_seconds"] / counters["seconds"],
        learner_alone_apply_seconds=alone["apply_seconds"],
        learner_alone_publish_seconds=alone["publish_seconds"],
        learner_alone_updates_per_s=1.0 / (alone["apply_seconds"] + alone["publish_seconds"]),
        params_bytes=alone["params_bytes"],
    )
    print(json.dumps(result, indent=1))
    ray.shutdown()


if __name__ == "__main__":
    main()
