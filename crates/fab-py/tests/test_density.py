"""The Python density adapter: values and gradients match the built-in target, errors raised inside the function
propagate unchanged, wrong shapes/dtypes raise ValueError naming both shapes, non-finite values are counted."""
import numpy as np
import pytest

import fabrs
from densities import mog2021


class MyError(Exception):
    pass


def test_numpy_mog_matches_the_builtin_mog_and_its_gradient():
    rng = np.random.default_rng(0)
    x = rng.normal(scale=8.0, size=(50, 2))
    lp_np, g_np = fabrs.Density(mog2021(), 2)(x)
    lp_rs, g_rs = fabrs.Mog2021()(x)
    np.testing.assert_allclose(lp_np, lp_rs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g_np, g_rs, rtol=1e-10, atol=1e-12)


def test_an_exception_inside_the_density_propagates_as_itself():
    def bad(x):
        raise MyError("boom at %d points" % len(x))
    d = fabrs.Density(bad, 2)
    with pytest.raises(MyError, match="boom at 3 points"):
        d(np.zeros((3, 2)))
    # The error was consumed: the next call raises afresh, not a stale error.
    with pytest.raises(MyError):
        d(np.zeros((1, 2)))


@pytest.mark.parametrize("ret, expected, received", [
    (lambda x: (np.zeros(len(x) + 1), np.zeros_like(x)), "shape (4,)", "shape (5,)"),
    (lambda x: (np.zeros(len(x)), np.zeros((len(x), 3))), "shape (4, 2)", "shape (4, 3)"),
    (lambda x: (np.zeros((len(x), 1)), np.zeros_like(x)), "shape (4,)", "shape (4, 1)"),
])
def test_a_wrong_shape_raises_value_error_naming_expected_and_received(ret, expected, received):
    with pytest.raises(ValueError) as e:
        fabrs.Density(ret, 2)(np.zeros((4, 2)))
    assert expected in str(e.value) and received in str(e.value), str(e.value)


def test_a_wrong_dtype_raises_value_error_naming_it():
    f = lambda x: (np.zeros(len(x), dtype=np.float32), np.zeros_like(x))
    with pytest.raises(ValueError, match=r"expected a float64 numpy array of shape \(4,\), received a float32"):
        fabrs.Density(f, 2)(np.zeros((4, 2)))


def test_a_non_tuple_return_raises_value_error():
    with pytest.raises(ValueError, match="must return a tuple"):
        fabrs.Density(lambda x: np.zeros(len(x)), 2)(np.zeros((4, 2)))


def test_input_of_the_wrong_dimension_is_refused():
    with pytest.raises(ValueError, match=r"expected an array of shape \(n, 2\), received shape \(4, 3\)"):
        fabrs.Density(mog2021(), 2)(np.zeros((4, 3)))


def test_non_finite_values_are_counted_not_raised():
    def half_outside(x):
        lp = -0.5 * np.sum(x**2, axis=1)
        lp[::2] = -np.inf
        lp[1::4] = np.nan
        return lp, -x
    d = fabrs.Density(half_outside, 2)
    lp, _ = d(np.ones((8, 2)))
    assert np.sum(~np.isfinite(lp)) == 6
    assert d.n_non_finite == 6 and d.n_calls == 1 and d.n_points == 8


def test_an_optional_value_only_function_serves_gradient_free_calls():
    f = mog2021()
    value_calls = []

    def value_only(x):
        value_calls.append(len(x))
        return f(x)[0]
    d = fabrs.Density(f, 2, log_prob=value_only)
    lp, _ = d(np.zeros((3, 2)))  # __call__ needs the gradient: uses f
    assert value_calls == []
    np.testing.assert_allclose(lp, fabrs.Mog2021()(np.zeros((3, 2)))[0])
