"""fabrs.hmc on a numpy Gaussian: mean and variance within CLT bounds, determinism across seeds and threads,
one Python call per leapfrog step per chunk of chains, exceptions and Ctrl-C."""

import numpy as np
import pytest

import fabrs
from densities import gaussian

MEAN, STD = np.array([1.0, -2.0, 0.5]), np.array([0.5, 2.0, 1.3])


def test_hmc_recovers_mean_and_variance_within_clt_bounds():
    d = fabrs.Density(gaussian(MEAN, STD), 3)
    r = fabrs.hmc(d, np.zeros((32, 3)), n_samples=1000, n_warmup=300, seed=7)
    draws = r["draws"]                                   # t × chain × dim
    assert np.all(np.asarray(r["r_hat"]) < 1.05), r["r_hat"]
    x = draws.reshape(-1, 3)
    # The 32 chains are independent: the spread of their per-chain estimates gives each overall estimate's
    # standard error (CLT over chains, whatever the autocorrelation within a chain). 5 SE bounds.
    n_chains = draws.shape[1]
    se_mean = draws.mean(0).std(0, ddof=1) / np.sqrt(n_chains)
    se_var = draws.var(0).std(0, ddof=1) / np.sqrt(n_chains)
    assert np.all(np.abs(x.mean(0) - MEAN) < 5 * se_mean), (x.mean(0), MEAN, se_mean)
    assert np.all(np.abs(x.var(0) - STD**2) < 5 * se_var), (x.var(0), STD**2, se_var)
    # The bounds are tight enough to mean something: a few percent of the variance.
    assert np.all(se_var < 0.05 * STD**2), se_var
    assert 0.6 < r["acceptance_rate"] < 0.95


def test_hmc_is_deterministic_for_a_seed_and_any_thread_count():
    d = fabrs.Density(gaussian(MEAN, STD), 3)
    a = fabrs.hmc(d, np.zeros((100, 3)), n_samples=20, n_warmup=20, seed=3, threads=1)["draws"]
    b = fabrs.hmc(d, np.zeros((100, 3)), n_samples=20, n_warmup=20, seed=3, threads=2)["draws"]
    c = fabrs.hmc(d, np.zeros((100, 3)), n_samples=20, n_warmup=20, seed=4, threads=2)["draws"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("n_chains", [10, 64, 130, 500])
def test_the_density_is_called_once_per_leapfrog_step_on_all_chains(n_chains):
    # A Python density is whole-batch (fab_core::Evaluation::WholeBatch): one call per leapfrog step covering every
    # chain, never per point or per chunk of 64 chains, whatever the number of chains.
    d = fabrs.Density(gaussian(MEAN, STD), 3)
    n_steps, n_leapfrog = 7, 5
    fabrs.hmc(d, np.zeros((n_chains, 3)), n_samples=n_steps, n_warmup=0, n_leapfrog=n_leapfrog, seed=0, threads=2)
    assert d.n_calls == n_steps * n_leapfrog + 1  # + the initial evaluation
    assert d.n_points == d.n_calls * n_chains


def test_an_exception_in_the_density_stops_hmc_and_propagates():
    calls = []

    class Boom(Exception):
        pass

    f = gaussian(MEAN, STD)

    def flaky(x):
        calls.append(1)
        if len(calls) == 40:
            raise Boom("call 40")
        return f(x)
    d = fabrs.Density(flaky, 3)
    with pytest.raises(Boom, match="call 40"):
        fabrs.hmc(d, np.zeros((16, 3)), n_samples=100, n_warmup=10, seed=0)
    # It stopped at the end of the transition that failed: ≤ one transition of calls after the raise.
    assert len(calls) <= 40 + 10


def test_ctrl_c_stops_hmc_with_keyboard_interrupt(interrupt_after):
    d = fabrs.Density(gaussian(MEAN, STD), 3)
    interrupt_after(0.3)
    # The budget is ~50 s of sampling here: a lost interrupt fails the test instead of hanging it.
    with pytest.raises(KeyboardInterrupt):
        fabrs.hmc(d, np.zeros((16, 3)), n_samples=2 * 10**5, n_warmup=0, seed=0)


def test_non_finite_proposals_are_rejected_and_counted():
    f = gaussian(np.zeros(2), np.ones(2))

    def half_plane(x):
        lp, g = f(x)
        return np.where(x[:, 0] > 0, lp, -np.inf), g
    d = fabrs.Density(half_plane, 2)
    r = fabrs.hmc(d, np.full((16, 2), 0.5), n_samples=200, n_warmup=100, seed=1)
    assert np.all(r["draws"][..., 0] > 0)
    assert d.n_non_finite > 0
