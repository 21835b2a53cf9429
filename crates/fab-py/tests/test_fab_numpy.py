"""FAB trained on densities written in numpy: it learns a 2-D mixture, is deterministic, calls the density once per
batch, and an exception, a wrong shape or Ctrl-C in the middle of training leaves a usable run behind."""

import numpy as np
import pytest

import fabrs
from densities import two_modes, mog2021

ITERS = 600


@pytest.fixture(scope="module")
def trained():
    density = fabrs.Density(two_modes(), 2, name="two_modes", log_z=0.0)
    return density, fabrs.train(density, iterations=ITERS, seed=0, quiet=True)


def test_fab_on_a_numpy_mixture_reaches_half_effective_sample_size(trained):
    _, model = trained
    e = model.evaluate(n=10000)
    assert e["flow_ess"] >= 50.0, e
    assert e["log_z_flow"] is not None  # log_z=0.0 was declared: log-Z errors are reported
    log_z, se = model.log_z(n=10000)
    assert abs(log_z) < 5 * se + 1e-3, (log_z, se)  # the mixture is normalised
    x, _ = model.sample(10000, seed=1)
    frac_right = np.mean(x[:, 0] > 0)
    assert abs(frac_right - 0.7) < 0.05, frac_right  # both modes, with their weights


def test_same_seed_gives_the_same_samples_twice(trained):
    density, model = trained
    again = fabrs.train(fabrs.Density(two_modes(), 2), iterations=20, seed=0, quiet=True, threads=2)
    first = fabrs.train(fabrs.Density(two_modes(), 2), iterations=20, seed=0, quiet=True, threads=1)
    np.testing.assert_array_equal(again.sample(100, seed=2)[0], first.sample(100, seed=2)[0])
    np.testing.assert_array_equal(again.ais_sample(100, seed=2)[1], first.ais_sample(100, seed=2)[1])


def test_the_density_is_called_once_per_batch_not_per_chunk():
    d = fabrs.Density(two_modes(), 2)
    # 300 points: five chunks of 64 if the samplers chunked; whole-batch means one call per HMC leapfrog step.
    fabrs.train(d, iterations=3, seed=0, batch_size=300, quiet=True)
    # FAB 2021 default: 2 intermediate distributions × 5 leapfrog steps, +1 gradient at the AIS start, per iteration
    # (plus the initial evaluation); with chunking it would be ≥ 5 × that.
    assert d.n_calls <= 3 * (2 * 5 + 3), d.n_calls
    assert d.n_points >= 3 * 300 * 2 * 5


class Boom(Exception):
    pass


def flaky_density(fail_at):
    f, calls = two_modes(), []

    def g(x):
        calls.append(1)
        if len(calls) == fail_at:
            raise Boom(f"call {fail_at}")
        return f(x)
    return g, calls


def test_an_exception_in_training_propagates_and_the_run_rolls_back_to_its_checkpoint(tmp_path):
    d = tmp_path / "run"
    g, calls = flaky_density(100)
    with pytest.raises(Boom, match="call 100"):
        fabrs.train(fabrs.Density(g, 2), iterations=50, seed=0, run_dir=d, quiet=True)
    k = fabrs.Model.load(d, density=fabrs.Density(two_modes(), 2)).iteration
    assert 0 < k < 50
    # The rolled-back state is the uninterrupted run's state at iteration k: resuming gives the same flow.
    resumed = fabrs.train(fabrs.Density(two_modes(), 2), iterations=k + 2, run_dir=d, resume=True, quiet=True)
    straight = fabrs.train(fabrs.Density(two_modes(), 2), iterations=k + 2, seed=0, quiet=True)
    x, _ = straight.sample(50)
    np.testing.assert_array_equal(resumed.log_prob(x), straight.log_prob(x))


def test_a_wrong_shape_in_training_raises_value_error():
    f = two_modes()
    with pytest.raises(ValueError, match=r"grad \(second returned array\): expected a float64 numpy array of shape"):
        fabrs.train(fabrs.Density(lambda x: (f(x)[0], f(x)[1][:, :1]), 2), iterations=3, quiet=True)


def test_non_finite_values_are_counted_in_the_run():
    f = two_modes()

    def holes(x):
        lp, g = f(x)
        return np.where(np.abs(x[:, 1]) > 3.0, -np.inf, lp), g
    d = fabrs.Density(holes, 2)
    m = fabrs.train(d, iterations=20, seed=0, quiet=True)
    assert d.n_non_finite > 0
    assert sum(h["n_dropped"] for h in m.history) >= 0
    assert np.isfinite(m.log_z(n=2000)[0])


def test_ctrl_c_in_numpy_training_checkpoints_and_raises(tmp_path, interrupt_after):
    d = tmp_path / "run"
    interrupt_after(1.0)
    # The budget is ~50 s of training here: a lost interrupt fails the test instead of hanging it.
    with pytest.raises(KeyboardInterrupt):
        fabrs.train(fabrs.Density(mog2021(), 2), iterations=10**4, seed=0, run_dir=d, quiet=True)
    m = fabrs.Model.load(d, density=fabrs.Density(mog2021(), 2))
    assert m.iteration > 0
    with pytest.raises(ValueError, match="density"):
        fabrs.Model.load(d)  # a run on a Python density needs it back


def test_gradient_free_calls_use_the_value_only_function():
    f, sizes = two_modes(), []

    def value_only(x):
        sizes.append(len(x))
        return f(x)[0]
    m = fabrs.train(fabrs.Density(f, 2, log_prob=value_only), iterations=2, seed=0, quiet=True)
    before = len(sizes)
    m.log_z(n=500)
    assert sizes[before:] == [500]  # one call, all flow samples at once
