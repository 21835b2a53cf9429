"""fabrs.train and fabrs.Model on a built-in target: determinism, save → load, run directories, Ctrl-C and resume,
config errors."""
import json
import os

import numpy as np
import pytest

import fabrs

QUICK = dict(iterations=8, seed=1, batch_size=64, quiet=True)


def test_same_seed_same_samples_for_any_thread_count():
    a = fabrs.train(fabrs.Mog2021(), threads=1, **QUICK)
    b = fabrs.train(fabrs.Mog2021(), threads=2, **QUICK)
    xa, lqa = a.sample(200, seed=5)
    xb, lqb = b.sample(200, seed=5)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(lqa, lqb)
    c = fabrs.train(fabrs.Mog2021(), **{**QUICK, "seed": 2})
    assert not np.array_equal(c.sample(200, seed=5)[0], xa)


def test_save_then_load_gives_identical_log_prob(tmp_path):
    m = fabrs.train(fabrs.Mog2021(), **QUICK)
    x, log_q = m.sample(300, seed=0)
    # Sampling returns the flow's own log q (the inverse pass agrees up to rounding).
    np.testing.assert_allclose(m.log_prob(x), log_q, rtol=1e-12)
    m.save(tmp_path / "flow.safetensors")
    loaded = fabrs.Model.load(tmp_path / "flow.safetensors")
    np.testing.assert_array_equal(loaded.log_prob(x), m.log_prob(x))
    np.testing.assert_array_equal(loaded.sample(50, seed=3)[0], m.sample(50, seed=3)[0])
    with pytest.raises(fabrs.FabError, match="holds a flow alone"):
        loaded.ais_sample(10)


def test_a_run_directory_has_the_cli_layout_and_loads_back(tmp_path):
    d = tmp_path / "run"
    m = fabrs.train(fabrs.Mog2021(), run_dir=d, **QUICK)
    for f in ["config.ron", "checkpoint.fab", "metrics.jsonl", "flow.safetensors"]:
        assert (d / f).exists(), f
    lines = [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
    assert [l["iteration"] for l in lines if l["kind"] == "iteration"] == list(range(8))
    assert len(m.history) == 8 and m.history[-1]["iteration"] == 7
    loaded = fabrs.Model.load(d)
    assert loaded.iteration == 8
    x, _ = m.sample(100)
    np.testing.assert_array_equal(loaded.log_prob(x), m.log_prob(x))
    np.testing.assert_array_equal(fabrs.Model.load(d / "flow.safetensors").log_prob(x), m.log_prob(x))
    with pytest.raises(ValueError, match="already holds a run"):
        fabrs.train(fabrs.Mog2021(), run_dir=d, **QUICK)


def test_ctrl_c_stops_at_an_iteration_boundary_with_a_checkpoint_and_resume_continues_bitwise(tmp_path, interrupt_after):
    d = tmp_path / "run"
    interrupt_after(1.0)
    # The budget is ~50 s of training here: a lost interrupt fails the test instead of hanging it.
    with pytest.raises(KeyboardInterrupt):
        fabrs.train(fabrs.Mog2021(), iterations=2 * 10**4, seed=1, batch_size=64, run_dir=d, quiet=True)
    stopped = fabrs.Model.load(d)
    k = stopped.iteration
    assert k > 0
    lines = (d / "metrics.jsonl").read_text().splitlines()
    assert len([l for l in lines if '"kind":"iteration"' in l]) == k  # nothing logged past the checkpoint
    resumed = fabrs.train(fabrs.Mog2021(), iterations=k + 3, run_dir=d, resume=True, quiet=True)
    assert resumed.iteration == k + 3
    straight = fabrs.train(fabrs.Mog2021(), iterations=k + 3, seed=1, batch_size=64, quiet=True)
    x, _ = straight.sample(100)
    np.testing.assert_array_equal(resumed.log_prob(x), straight.log_prob(x))


def test_model_results_have_their_documented_shapes_and_meaning():
    m = fabrs.train(fabrs.Mog2021(), **QUICK)
    x, log_w = m.ais_sample(256, seed=0)
    assert x.shape[1] == 2 and log_w.shape == (x.shape[0],) and x.shape[0] <= 256
    value, se = m.log_z(n=2000)
    assert np.isfinite(value) and se > 0
    e = m.evaluate(n=500)
    assert e["iteration"] == 8 and 0 <= e["flow_ess"] <= 100 and 0 <= e["ais_ess"] <= 100
    assert e["log_z_flow"]["n_runs"] == 50  # the MoG knows its log Z: errors are reported


def test_config_strings_files_and_overrides(tmp_path):
    ron = (open(os.path.join(os.path.dirname(__file__), "..", "src", "default_config.ron")).read()
           .replace("batch_size: 100", "batch_size: 32"))
    m = fabrs.train(fabrs.Mog2021(), ron, iterations=2, quiet=True)
    assert m.iteration == 2 and m.history[-1]["target_evaluations"] > 0
    path = tmp_path / "c.ron"
    path.write_text(ron.replace("lr: 5e-4", "lr: -1.0"))
    with pytest.raises(ValueError, match="optimizer.lr"):
        fabrs.train(fabrs.Mog2021(), path, iterations=2)
    with pytest.raises(ValueError, match="the flow has dimension 2, the density has dimension 16"):
        fabrs.train(fabrs.ManyWell(16), ron, iterations=2)
    with pytest.raises(ValueError, match="no such file"):
        fabrs.train(fabrs.Mog2021(), "nope.ron")
    with pytest.raises(TypeError, match="fabrs.Density"):
        fabrs.train(lambda x: x)
