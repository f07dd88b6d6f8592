"""The Atari entries' settings learn from pixels: MinAtar Breakout in a couple of minutes on 2 cores.

Every hyperparameter of the ``atari`` entries of zoo_configs/ (optimizer, its epsilon, learning
rate schedule, t_max, environments per worker, entropy, clipping) is used as shipped, with a small
CNN for MinAtar's 10x10 images (see benchmarks/minatar.py). This is the check that would have
caught the paper's epsilon of 0.1 under SB3's mean losses. Measured at 600k steps with 2 workers
(mean score of the last 100 training games; random play scores about 0.4): A3C (RMSpropTFLike,
epsilon 1e-5) 5.23, 5.64, 4.82 (seeds 0, 1, 2); n-step Q (Adam 1e-4) 2.00, 2.15 (seeds 0, 1).
With the paper's RMSprop epsilon of 0.1 (seed 0): A3C 0.45, n-step Q 0.42. The heads are built as
the entries' Paper* policies build them (n-step Q: action values straight from the features).

What this proxy does not catch: n-step Q with RMSpropTFLike at 1e-5 scores 2.37 and 2.35 here,
as well as Adam, but did not learn Pong in 3M steps where Adam did (zoo_configs/README.md); a
reason is not known (the small CNN on 10x10 grids is not the paper's network on 84x84 frames).
Pong itself is the measure; this guards against settings that cannot learn from pixels at all.
Commands: ``python -m benchmarks.minatar --algo a3c --timesteps 600000 --seeds 0 1 2``
(and ``-params "policy_kwargs:'dict(optimizer_class=RMSpropTFLike, optimizer_kwargs=dict(eps=0.1))'"``,
with ``net_arch=dict(pi=[64, 64], vf=[64, 64])`` added inside for a3c, whose entry names its heads,
and ``use_rms_prop:True learning_rate:lin_7e-4`` added for n-step Q).
"""

import pytest

from benchmarks.minatar import run


@pytest.mark.slow
@pytest.mark.parametrize("algo, threshold", [("a3c", 2.5), ("async_nstep_q", 1.2)])
def test_atari_entry_settings_learn_minatar_breakout(algo, threshold):
    result = run(algo, timesteps=600_000, seed=0)
    assert result["mean100"] >= threshold, result
