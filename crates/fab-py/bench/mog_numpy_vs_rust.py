"""Benchmark (not a test): CPU time of one FAB iteration on the 2021 MoG written in numpy vs the built-in Rust MoG,
same config (the CLI default, configs/mog_fab_2021.ron), one thread. Prints both and their ratio.

Usage: python bench/mog_numpy_vs_rust.py [iterations] [--estimate]   (from crates/fab-py, after `pip install .`)

`--estimate` works without training on a Python density: it measures the built-in FAB iteration and the extra
CPU time of the numpy MoG over the Rust MoG per HMC leapfrog step on the FAB batch (100 chains), and adds the
latter 11 times (FAB 2021 default: 2 intermediate distributions × 5 leapfrog steps + the gradient at the start).
"""
import os
import sys
import time

import numpy as np

import fabrs

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from densities import mog2021  # noqa: E402


def cpu_seconds(target, iterations):
    """Process CPU time of `train` for `iterations` iterations (setup included)."""
    start = time.process_time()
    fabrs.train(target, iterations=iterations, seed=0, threads=1, quiet=True)
    return time.process_time() - start


def per_iteration(make_target, n):
    """CPU seconds per iteration: the difference of a long and a short run cancels the setup (flow init)."""
    short, long_ = cpu_seconds(make_target(), 10), cpu_seconds(make_target(), 10 + n)
    return (long_ - short) / n


def hmc_step_cpu(target, steps=400):
    """CPU seconds per leapfrog step of HMC on 100 chains (the FAB batch), 5 leapfrog steps, one thread."""
    start = time.process_time()
    fabrs.hmc(target, np.zeros((100, 2)), n_samples=steps, n_warmup=0, n_leapfrog=5, threads=1)
    return (time.process_time() - start) / (steps * 5)


def estimate(n):
    """The ratio from the built-in iteration plus the numpy density's extra cost per gradient evaluation."""
    rust = min(per_iteration(fabrs.Mog2021, n) for _ in range(3))
    numpy_density = fabrs.Density(mog2021(), 2)
    extra = min(hmc_step_cpu(numpy_density) for _ in range(3)) - min(hmc_step_cpu(fabrs.Mog2021()) for _ in range(3))
    calls_per_step = numpy_density.n_calls / (3 * (400 * 5 + 1))
    print(f"built-in Rust MoG: {rust * 1e3:.3f} ms CPU per FAB iteration")
    print(f"numpy MoG costs {extra * 1e6:.1f} us more per leapfrog step on 100 chains ({calls_per_step:.2f} calls/step)")
    print(f"estimated ratio numpy / Rust: {(rust + 11 * extra) / rust:.2f}")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 300
    if "--estimate" in sys.argv:
        return estimate(n)
    rust = min(per_iteration(fabrs.Mog2021, n) for _ in range(3))
    numpy_density = fabrs.Density(mog2021(), 2, name="mog2021_numpy")
    numpy = min(per_iteration(lambda: numpy_density, n) for _ in range(3))
    calls = numpy_density.n_calls
    print(f"built-in Rust MoG: {rust * 1e3:.3f} ms CPU per iteration")
    print(f"numpy MoG:         {numpy * 1e3:.3f} ms CPU per iteration ({calls} Python calls in all runs)")
    print(f"ratio numpy / Rust: {numpy / rust:.2f}")


if __name__ == "__main__":
    main()
