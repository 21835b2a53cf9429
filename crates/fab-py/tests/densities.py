"""Test densities written in numpy: the 2021 five-mode MoG (same constants as fab_targets::DiagGmm::mog5_2021),
a small two-mode mixture, and a diagonal Gaussian, each as f(x[n, d]) -> (log_p[n], grad[n, d])."""
import numpy as np

MOG2021_MEANS = np.array([
    [3.9229682477920975, -2.2356401839813858],
    [10.444635443343405, -6.332277352132833],
    [-3.91905858634541, -10.426788307393725],
    [-13.264806766986034, -12.41297177880561],
    [6.181049082544088, -2.384750161391176],
])
MOG2021_STDS = np.array([
    [1.7087511767056518, 1.5402614997621042],
    [1.1204069608987282, 1.2669473266365738],
    [1.082090767968522, 1.683001367104528],
    [1.73283945071899, 1.3663822453012855],
    [1.757934177868187, 1.1139249656831778],
])
MOG2021_WEIGHTS = np.array(
    [0.7439900860873985, 0.7067595900863742, 0.7945342617956747, 0.6953273686061083, 0.4236223670433845])


def diag_gmm(means, stds, weights):
    """A normalised diagonal Gaussian mixture as a batched (log_p, grad) function."""
    means, stds = np.asarray(means, float), np.asarray(stds, float)
    log_w = np.log(np.asarray(weights, float) / np.sum(weights))
    inv_var = 1.0 / stds**2
    log_norm = log_w - np.sum(np.log(stds), axis=1) - 0.5 * means.shape[1] * np.log(2 * np.pi)

    def f(x):
        diff = x[:, None, :] - means[None, :, :]                  # n × k × d
        comp = log_norm[None, :] - 0.5 * np.sum(diff**2 * inv_var, axis=2)   # n × k
        m = np.max(comp, axis=1, keepdims=True)
        r = np.exp(comp - m)
        s = np.sum(r, axis=1, keepdims=True)
        log_p = (m + np.log(s))[:, 0]
        resp = r / s                                              # n × k
        grad = -np.einsum("nk,nkd->nd", resp, diff * inv_var[None, :, :])
        return log_p, grad
    return f


def mog2021():
    """The 2021 MoG in numpy."""
    return diag_gmm(MOG2021_MEANS, MOG2021_STDS, MOG2021_WEIGHTS)


def two_modes():
    """Two well-separated 2-D modes, weights 0.3 / 0.7 (log Z = 0)."""
    return diag_gmm([[-3.0, 0.0], [3.0, 1.0]], [[0.8, 1.0], [1.0, 0.6]], [0.3, 0.7])


def gaussian(mean, std):
    """A normalised diagonal Gaussian."""
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    c = -np.sum(np.log(std)) - 0.5 * len(mean) * np.log(2 * np.pi)

    def f(x):
        z = (x - mean) / std
        return c - 0.5 * np.sum(z**2, axis=1), -z / std
    return f
