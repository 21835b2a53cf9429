"""Train FAB on your own density written in numpy, then print the flow's ESS and log Ẑ ± SE.

The target is a banana in 2-D: x0 ~ N(0, 2²), x1 | x0 ~ N(x0²/4, 1), unnormalised; its true log Z is
log(2π·2·1) ≈ 2.531, so the printed estimate can be checked.
Usage: python examples/own_density.py [iterations]
"""
import sys

import numpy as np

import fabrs


def banana(x):
    """Unnormalised log density and its gradient, for a batch x of shape (n, 2)."""
    r = x[:, 1] - x[:, 0] ** 2 / 4.0
    log_p = -0.5 * (x[:, 0] ** 2 / 4.0 + r**2)
    grad = np.stack([-x[:, 0] / 4.0 + r * x[:, 0] / 2.0, -r], axis=1)
    return log_p, grad


def main():
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    density = fabrs.Density(banana, dim=2, name="banana")
    model = fabrs.train(density, iterations=iterations, seed=0)
    report = model.evaluate(n=10000)
    log_z, se = model.log_z(n=10000)
    log_z_ais, se_ais = model.log_z(n=10000, ais=True)
    print(f"flow ESS {report['flow_ess']:.1f} %, AIS ESS {report['ais_ess']:.1f} %")
    print(f"log Z (flow IS) = {log_z:.3f} ± {se:.3f}")
    print(f"log Z (AIS)     = {log_z_ais:.3f} ± {se_ais:.3f}   (exact: {np.log(4 * np.pi):.3f})")
    x, log_w = model.ais_sample(1000)
    w = np.exp(log_w - log_w.max())
    print(f"E[x1] by AIS: {np.sum(w * x[:, 1]) / np.sum(w):.3f}   (exact: 1.000)")
    print(f"Python calls: {density.n_calls}, points evaluated: {density.n_points}")


if __name__ == "__main__":
    main()
