"""The converged SGD reference and the results-table jobs: training, caching, sharding."""

from __future__ import annotations

import csv
import warnings

import pytest
import torch
from torch import nn

from ghn_pyg.data import load_images
from ghn_pyg.nn import GHN
from ghn_pyg.train import reference as reference_module
from ghn_pyg.train import results as results_module
from ghn_pyg.train.evaluate import EvalSetup
from ghn_pyg.train.protocol import EvalProtocol
from ghn_pyg.train.reference import SGDRecipe, SGDReference, arch_key, train_to_convergence
from ghn_pyg.train.results import (SGD_METHOD, ResultJob, ResultRow, paired_differences,
                                   read_results, run_jobs, write_tables)
from ghn_pyg.train.tables import format_difference, mean_se

from .test_protocol import tiny_net


@pytest.fixture(scope="module")
def images():
    kw = dict(synthetic_size=400, synthetic_shape=(1, 12, 12))
    return (load_images("synthetic", "train", val_size=100, **kw),
            load_images("synthetic", "val", val_size=100, **kw),
            load_images("synthetic", "test", **kw))


FAST = SGDRecipe(max_epochs=4, patience=2, batch_size=16, lr=0.1)


def test_training_keeps_the_best_epoch_and_stops_when_validation_stalls(images, monkeypatch):
    train, val, _ = images
    module = tiny_net()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    model, record = train_to_convergence(module, train, val, FAST)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert 1 <= record.best_epoch <= record.epochs <= 4 and len(record.val_curve) == record.epochs
    assert record.best_val == max(record.val_curve) > 0.3  # synthetic classes are learnable
    assert not model.training
    curve = iter([0.5, 0.7, 0.6, 0.6, 0.9, 0.95])  # best at epoch 2, then 2 epochs without
    monkeypatch.setattr(reference_module, "_accuracy", lambda *a, **k: next(curve))
    _, record = train_to_convergence(module, train, val, SGDRecipe(max_epochs=6, patience=2,
                                                                   batch_size=64))
    assert (record.epochs, record.best_epoch, record.best_val) == (4, 2, 0.7)


def test_reference_cache_is_reused_and_invalidated(images, tmp_path):
    train, val, test = images
    module = tiny_net()
    setup = EvalSetup.create(test, train, EvalProtocol(bn_batches=2, calib_batches=1,
                                                       batch_size=64))
    first = SGDReference(tmp_path / "cache", train, val, FAST, models=tmp_path / "models")
    accuracy, info = first.accuracy("tiny", module, (1, 12, 12), (32, 4), setup)
    assert first.trainings == 1 and set(accuracy) == {32, 4} and int(info["epochs"]) >= 1
    again = SGDReference(tmp_path / "cache", train, val, FAST, models=tmp_path / "models")
    assert again.accuracy("tiny", module, (1, 12, 12), (32, 4), setup)[0] == accuracy
    assert again.trainings == 0
    assert set(again.records(["tiny", "absent"])) == {"tiny"}
    # a new evaluation setting: kept weights are evaluated, not trained again
    ghn2 = EvalSetup.create(test, train, "ghn2")
    again.accuracy("tiny", module, (1, 12, 12), (32, 4), ghn2)
    assert again.trainings == 0
    rows = list(csv.DictReader((tmp_path / "cache" / "tiny.csv").open()))
    assert len(rows) == 4 and {r["evaluation"] for r in rows} == {setup.key(), ghn2.key()}
    # another recipe or another architecture under the same name: trained again, stale rows go
    other = SGDReference(tmp_path / "cache", train, val, SGDRecipe(max_epochs=2, patience=1,
                                                                   batch_size=32))
    other.accuracy("tiny", module, (1, 12, 12), (32, 4), setup)
    assert other.trainings == 1
    assert len(list(csv.DictReader((tmp_path / "cache" / "tiny.csv").open()))) == 2
    changed = nn.Sequential(*list(tiny_net())[:3], nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(8, 10))
    assert arch_key(changed) != arch_key(module)
    other.accuracy("tiny", changed, (1, 12, 12), (32, 4), setup)
    assert other.trainings == 2
    with pytest.raises(ValueError, match="cannot name a cache file"):
        other.accuracy("a/b", module, (1, 12, 12), (32,), setup)


def test_a_retraining_that_differs_drops_the_rows_of_the_earlier_network(images, tmp_path):
    train, val, test = images
    module = tiny_net()
    setup = EvalSetup.create(test, train, EvalProtocol(bn_batches=2, calib_batches=1,
                                                       batch_size=64))
    ghn2 = EvalSetup.create(test, train, "ghn2")
    path = tmp_path / "cache" / "tiny.csv"

    def cached_rows() -> list[dict[str, str]]:
        return list(csv.DictReader(path.read_text().splitlines()))

    SGDReference(tmp_path / "cache", train, val, FAST).accuracy("tiny", module, (1, 12, 12),
                                                               (32, 4), setup)
    # no kept weights: the same training again (same device) reproduces it, rows stay
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SGDReference(tmp_path / "cache", train, val, FAST).accuracy("tiny", module, (1, 12, 12),
                                                                   (32, 4), ghn2)
    assert {r["evaluation"] for r in cached_rows()} == {setup.key(), ghn2.key()}
    # rows of a training that ended elsewhere (as on another device) are not mixed in
    rows = cached_rows()
    for r in rows:
        if r["evaluation"] == setup.key():
            r["best_val"], r["epochs"] = "0.12345", "99"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    third = EvalSetup.create(test, train, EvalProtocol(bn_batches=1, calib_batches=1,
                                                       batch_size=64))
    with pytest.warns(UserWarning, match=r"'tiny'.*differs.*dropping their rows"):
        SGDReference(tmp_path / "cache", train, val, FAST).accuracy("tiny", module, (1, 12, 12),
                                                                   (32,), third)
    left = cached_rows()
    assert {r["evaluation"] for r in left} == {ghn2.key(), third.key()}
    assert len({(r["epochs"], r["best_epoch"], r["best_val"]) for r in left}) == 1


def test_bad_recipes_are_value_errors():
    with pytest.raises(ValueError, match="patience must be >= 1"):
        SGDRecipe(patience=0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        SGDRecipe(lr=0)
    assert SGDRecipe().key() != SGDRecipe(max_epochs=10).key()


def two_ghns():
    torch.manual_seed(0)
    return {"GHN": GHN(hid=8), "GHN-QAT": GHN(hid=8)}


def test_jobs_cache_resume_shard_and_write_tables(images, tmp_path, monkeypatch):
    train, val, test = images
    models = {"test": [("a", tiny_net()), ("b", tiny_net())], "wide": [("c", tiny_net())]}
    protocol = EvalProtocol(bn_batches=1, calib_batches=1, batch_size=64)
    jobs = [ResultJob("test", protocol, (32, 4), sgd=True, images=50),
            ResultJob("wide", protocol, (32, 4), images=50),
            ResultJob("test", EvalProtocol("ghn2"), (4,), per_channel=False, images=50)]
    sgd = SGDReference(tmp_path / "sgd", train, val, FAST)
    calls = []  # (architecture, methods evaluated) per call of evaluate_architecture
    real = results_module.evaluate_architecture
    monkeypatch.setattr(results_module, "evaluate_architecture",
                        lambda graph, module, shape, ghns, bits, baselines, *a, **k:
                        calls.append((graph.name, (*ghns, *baselines)))
                        or real(graph, module, shape, ghns, bits, baselines, *a, **k))
    run = lambda ghns, shard=(0, 1): run_jobs(  # noqa: E731
        jobs, models.__getitem__, (1, 12, 12), ghns, ("he",), test, train, tmp_path / "cache",
        sgd, shard=shard, progress=False)
    ghns = two_ghns()
    assert run_jobs(jobs, models.__getitem__, (1, 12, 12), ghns, ("he",), test, train,
                    tmp_path / "cache", sgd, compute=False, progress=False) is None
    assert calls == [] and sgd.trainings == 0  # assembling only reads the cache
    assert run(ghns, (0, 2)) is None  # shard 0 owns a and c; b is left to shard 1
    assert sorted(a for a, _ in calls) == ["a", "a", "c"] and sgd.trainings == 1
    rows = run(ghns, (1, 2))
    assert sorted(a for a, _ in calls) == ["a", "a", "b", "b", "c"] and sgd.trainings == 2
    assert {m for _, m in calls} == {("GHN", "GHN-QAT", "he")}
    assert len(rows) == 2 * 2 * 4 + 1 * 2 * 3 + 2 * 1 * 3
    assert {r.method for r in rows if r.split == "test"} == {"GHN", "GHN-QAT", "he", SGD_METHOD}
    assert len(run(ghns)) == len(rows) and len(calls) == 5  # all cached
    with torch.no_grad():
        next(ghns["GHN"].parameters()).add_(1.0)  # new weights: only this GHN's rows are stale
    changed = run(ghns)
    assert calls[5:] == [(a, ("GHN",)) for a in ("a", "b", "c", "a", "b")]
    assert sgd.trainings == 2  # the SGD reference is reused
    same = lambda r: (r.protocol, r.setting, r.split, r.arch, r.method, r.bits)  # noqa: E731
    old = {same(r): r.accuracy for r in rows}
    assert all(old[same(r)] == r.accuracy for r in changed if r.method != "GHN")
    # A run with one GHN returns its rows only and keeps the other's cached rows.
    only_qat = run({"GHN-QAT": ghns["GHN-QAT"]})
    assert len(calls) == 10 and {r.method for r in only_qat} == {"GHN-QAT", "he", SGD_METHOD}
    assert len(run(ghns)) == len(rows) and len(calls) == 10
    # Another baseline is evaluated alone, without the cached GHNs.
    run_jobs(jobs, models.__getitem__, (1, 12, 12), ghns, ("he", "xavier_normal"), test, train,
             tmp_path / "cache", sgd, progress=False)
    assert calls[10:] == [(a, ("xavier_normal",)) for a in ("a", "b", "c", "a", "b")]
    paths = write_tables(rows, tmp_path / "out", tmp_path / "fig", caption="a caption")
    text = paths["markdown"].read_text()
    assert "a caption" in text and "## protocol `calibrated`, weights per-channel" in text
    assert "## protocol `ghn2`, weights per-tensor" in text
    assert f"{SGD_METHOD} at FP32 on the same 2 architectures" in text
    assert "| wide  | GHN (1)" in text and "±" in text.split("| wide")[0]
    wide_line = [line for line in text.splitlines() if line.startswith("| wide  | GHN (1)")][0]
    assert "±" not in wide_line  # one network: no standard error
    assert len(paths["csv"].read_text().splitlines()) == 1 + len(rows)
    assert (tmp_path / "fig" / "accuracy-vs-bits-calibrated-per-channel.png").is_file()
    with pytest.raises(ValueError, match="shard must be"):
        run(ghns, (2, 2))
    with pytest.raises(ValueError, match="SGD reference"):
        run_jobs(jobs, models.__getitem__, (1, 12, 12), ghns, ("he",), test, train,
                 tmp_path / "cache", None, progress=False)


def test_jobs_redo_reference_rows_its_own_cache_dropped(images, tmp_path):
    train, val, test = images
    models = {"test": [("a", tiny_net())]}
    job = ResultJob("test", EvalProtocol(bn_batches=1, calib_batches=1, batch_size=64), (32, 4),
                    sgd=True, images=50)
    sgd = SGDReference(tmp_path / "sgd", train, val, FAST)

    def run(compute: bool = True):
        return run_jobs([job], models.__getitem__, (1, 12, 12), {}, (), test, train,
                        tmp_path / "cache", sgd, compute=compute, progress=False)

    first = {r.bits: r.accuracy for r in run()}
    assert sgd.trainings == 1 and {r.bits for r in run(compute=False)} == {32, 4}
    # the reference's own rows go (as when a retraining gave another network): the
    # results cache's copy is stale, and assembling alone reports it missing
    path = tmp_path / "sgd" / "a.csv"
    header = path.read_text().splitlines()[0]
    path.write_text(header + "\n")
    assert run(compute=False) is None
    # its own rows replaced by another network's: stale too; recomputing reads them back
    redone = {r.bits: r.accuracy for r in run()}
    assert sgd.trainings == 2 and redone == first  # the same device reproduces the training
    rows = list(csv.DictReader(path.read_text().splitlines()))
    for r in rows:
        r["accuracy"] = "0.01000"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert {r.bits: r.accuracy for r in run()} == {32: 0.01, 4: 0.01}
    assert sgd.trainings == 2


def test_cached_rows_record_the_machine_and_tables_flag_mixed_machines(images, tmp_path):
    from ghn_pyg.machine import UNRECORDED, compute_signature
    train, _, test = images
    models = {"test": [("a", tiny_net()), ("b", tiny_net())]}
    jobs = [ResultJob("test", EvalProtocol(bn_batches=1, calib_batches=1, batch_size=64),
                      (32, 4), images=50)]
    ghns = two_ghns()
    run = lambda: run_jobs(jobs, models.__getitem__, (1, 12, 12), ghns, ("he",),  # noqa: E731
                           test, train, tmp_path / "cache", progress=False)
    here = compute_signature("cpu")
    assert here.startswith(f"CPU ({torch.backends.cpu.get_cpu_capability()} kernels)")
    rows = run()
    assert {r.machine for r in rows} == {here}
    path = tmp_path / "cache" / jobs[0].name / "b.csv"
    written = list(csv.DictReader(path.open()))
    assert {r["machine"] for r in written} == {here}
    # A cache from before machines were recorded: no column. It stays valid (not
    # recomputed) and its rows read as unrecorded; only a stale method gets this machine.
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "arch", "method", "bits", "accuracy"])
        writer.writerows([r["key"], r["arch"], r["method"], r["bits"], r["accuracy"]]
                         for r in written if r["method"] != "he")
    rows = run()
    machines = {(r.arch, r.method): r.machine for r in rows}
    assert machines["b", "GHN"] == machines["b", "GHN-QAT"] == UNRECORDED
    assert machines["b", "he"] == machines["a", "GHN"] == here
    assert {r["method"]: r["machine"] for r in csv.DictReader(path.open())} == \
        {"GHN": UNRECORDED, "GHN-QAT": UNRECORDED, "he": here}
    paths = write_tables(rows, tmp_path / "out")
    text = paths["markdown"].read_text()
    section = text.split("## Where the rows were computed")[1]
    cells = {tuple(c.strip() for c in line.strip("|").split("|"))[2:]
             for line in section.splitlines() if line.startswith("| `calibrated`")}
    assert cells == {(here, "2", "GHN, GHN-QAT, he"), (UNRECORDED, "1", "GHN, GHN-QAT")}
    assert "Mixed machines in `calibrated` per-channel test" in section
    assert {r["machine"] for r in csv.DictReader(paths["csv"].open())} == {here, UNRECORDED}
    one_machine = write_tables([r for r in rows if r.arch == "a"], tmp_path / "one")
    assert "Mixed machines" not in one_machine["markdown"].read_text()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            compute_signature("cuda")


def test_ghn_fingerprint_tells_output_settings_apart():
    ghn_fingerprint = results_module.ghn_fingerprint
    torch.manual_seed(0)
    ghn = GHN(hid=8)
    same = GHN(hid=8, bias_range=0.1)
    same.load_state_dict(ghn.state_dict())
    assert ghn_fingerprint({"g": ghn}) == ghn_fingerprint({"g": same})
    for setting in ({"bias_range": 1.0}, {"norm_slope": 0.5}, {"message_relu": True}):
        other = GHN(hid=8, **setting)
        other.load_state_dict(ghn.state_dict())
        assert ghn_fingerprint({"g": other}) != ghn_fingerprint({"g": ghn}), setting


def _result(arch: str, method: str, bits: int, accuracy: float, split: str = "test"):
    return ResultRow("calibrated", "per-channel", split, arch, method, bits, accuracy)


def test_paired_differences_pair_architectures_per_split_and_bits(tmp_path):
    rows = [_result("a", "GHN", 32, 0.70), _result("b", "GHN", 32, 0.60),
            _result("c", "GHN", 32, 0.50),  # c: no GHN-QAT row, not paired
            _result("a", "GHN-QAT", 32, 0.66), _result("b", "GHN-QAT", 32, 0.62),
            _result("a", "GHN", 4, 0.40), _result("a", "GHN-QAT", 4, 0.50),
            _result("x", "GHN", 32, 0.2, "nobn"), _result("x", "he", 32, 0.1, "nobn")]
    table = paired_differences(rows, [("GHN-QAT", "GHN")])
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    # FP32: deltas -4 and +2 -> mean -1.0, s.e. 3.0, ahead on 1 of 2
    assert cells == [["`calibrated`, per-channel", "test", "GHN-QAT - GHN", "FP32",
                      "-1.0 ± 3.0 (1/2)", "-4.0", "-1.0", "+2.0"],
                     ["`calibrated`, per-channel", "test", "GHN-QAT - GHN", "W4A4",
                      "+10.0 ± 0.0 (1/1)", "+10.0", "+10.0", "+10.0"]]  # nobn: no pair
    with pytest.raises(ValueError, match="no result rows for method\\(s\\) 'SGD'.*GHN, GHN-QAT"):
        paired_differences(rows, [("SGD", "GHN")])
    paths = write_tables(rows, tmp_path / "out", pairs=[("GHN-QAT", "GHN")])
    text = paths["markdown"].read_text()
    assert "## Paired differences" in text and "-1.0 ± 3.0 (1/2)" in text
    plain = write_tables(rows, tmp_path / "plain")["markdown"].read_text()
    assert "## Paired differences" not in plain
    # read_results gives back what write_tables wrote (accuracies to 5 decimals)
    back = read_results(paths["csv"])
    assert [(r.arch, r.method, r.bits, r.accuracy, r.machine) for r in back] == \
        [(r.arch, r.method, r.bits, r.accuracy, r.machine) for r in rows]
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,method,accuracy\na,GHN,0.5\n")
    with pytest.raises(ValueError, match="no column bits, protocol, setting, split"):
        read_results(bad)


def test_mean_se_and_format_difference():
    assert mean_se([1.0, 3.0]) == (2.0, 1.0)
    assert mean_se([5.0]) == (5.0, 0.0)
    assert format_difference([-1.0, 3.0, 4.0]) == "+2.0 ± 1.5 (2/3)"
    assert format_difference([0.0]) == "+0.0 ± 0.0 (0/1)"  # a tie is not ahead
