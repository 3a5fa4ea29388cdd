"""The README's commands are the ones CI and users run."""

from pathlib import Path

import numpy as np
import pytest

import surprise_torch_benchmarks.head_to_head as bench

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    return [block.split("\n```")[0].strip() for block in blocks]


def test_readme_opens_with_the_benchmark_and_the_test_command():
    bench_cmd, test_cmd = readme_commands()
    assert bench_cmd.endswith("surprise-torch-bench") and "torch==2.13.0" in bench_cmd
    assert test_cmd.endswith("python -m pytest") and "torch==2.13.0" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()


def test_benchmark_entry_point_parses_its_options():
    args = bench.build_parser().parse_args(["--algorithms", "TorchALS", "--folds", "3", "--device", "cpu"])
    assert args.algorithms == ["TorchALS"] and args.folds == 3


@pytest.mark.parametrize("argv,message", [(["--repeat", "0"], "--repeat >= 1"), (["--device", "tpu"], "got 'tpu'"),
                                          (["--datasets", "foo"], "not a Surprise builtin dataset")])
def test_benchmark_usage_errors_are_messages_not_tracebacks(argv, message, capsys, monkeypatch):
    # A bad device or dataset used to surface as a traceback from the first fit or load.
    monkeypatch.setattr(bench, "load_dataset", lambda name: pytest.fail("loaded data despite a usage error"))
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_benchmark_writes_its_results(tmp_path, ml100k, capsys):
    code = bench.main(["--algorithms", "BaselineOnly", "TorchALS", "--folds", "2", "--datasets", "ml-100k",
                       "--out", str(tmp_path)])
    assert code == 0
    table = capsys.readouterr().out
    assert "| ml-100k | TorchALS |" in table
    import json
    payload = json.loads((tmp_path / "results.json").read_text())
    assert {r["algorithm"] for r in payload["results"]} == {"BaselineOnly", "TorchALS"}
    assert payload["environment"]["torch"]
    als = next(r for r in payload["results"] if r["algorithm"] == "TorchALS")
    assert len(als["rmse"]) == 2 and als["summary"]["rmse"][0] < 0.95
    assert len(als["convert_s"]) == 2 and 0 < als["summary"]["convert_s"][0] < als["summary"]["fit_s"][0]
    assert len(als["curves"]["eval_rmse"]) == 10
    assert (tmp_path / "results.md").read_text().count("| ml-100k |") == 2


def test_ctrl_c_keeps_the_finished_algorithms(tmp_path, ml100k, monkeypatch):
    real = bench.run_algorithm

    def interrupted_after_the_first(name, *args, **kwargs):
        if name != "BaselineOnly":
            raise KeyboardInterrupt
        return real(name, *args, **kwargs)

    monkeypatch.setattr(bench, "run_algorithm", interrupted_after_the_first)
    code = bench.main(["--algorithms", "BaselineOnly", "TorchALS", "--folds", "2", "--datasets", "ml-100k",
                       "--out", str(tmp_path)])
    assert code == 130
    import json
    payload = json.loads((tmp_path / "results.json").read_text())
    assert [r["algorithm"] for r in payload["results"]] == ["BaselineOnly"]


def test_first_epoch_summary_is_over_the_runs_that_finished():
    from surprise_torch_benchmarks.first_epoch import markdown, summarise

    runs = [{"status": "ok", "first_epoch_s": 0.4, "epoch_s": 0.2, "first_epoch_faults": 100, "peak_rss_gib": 1.0,
             "next_fit_first_epoch_s": 0.25, "next_fit_epoch_s": 0.125},
            {"status": "failed", "error": "MemoryError"},
            {"status": "ok", "first_epoch_s": 0.3, "epoch_s": 0.1, "first_epoch_faults": 300, "peak_rss_gib": 1.2,
             "next_fit_first_epoch_s": 0.3, "next_fit_epoch_s": 0.1},
            {"status": "ok", "first_epoch_s": 0.6, "epoch_s": 0.2, "first_epoch_faults": None, "peak_rss_gib": 1.1}]
    summary = summarise(runs)
    assert (summary["runs"], summary["ok"]) == (4, 3)
    assert summary["first_epoch_s"] == {"median": 0.4, "min": 0.3, "max": 0.6}
    assert summary["ratio"] == pytest.approx({"median": 3.0, "min": 2.0, "max": 3.0})
    # A run that could not count its faults is left out of their summary, not counted as zero.
    assert summary["first_epoch_faults"] == {"median": 200, "min": 100, "max": 300}
    # The process's next fit, over the runs that made one.
    assert summary["next_ratio"] == pytest.approx({"median": 2.5, "min": 2.0, "max": 3.0})
    table = markdown({(".", "default"): summary}, "TorchSVD", "ml-10m")
    assert "| . | `default` | 3/4 | 0.400 (0.300-0.600) |" in table
    assert table.splitlines()[-1].endswith("| 2.50 (2.00-3.00) |")


def test_fresh_memory_probe_times_both_writes_in_both_page_sizes_and_its_line_skips_failed_probes():
    from surprise_torch_benchmarks.first_epoch import fresh_memory_ms, probe_line

    for huge in (False, True):
        probe = fresh_memory_ms(mb=4, huge=huge)
        assert set(probe) == {"fresh", "refault"} and all(v > 0 for v in probe.values())
    rounds = [{"small_pages": {"fresh": 100.0, "refault": 10.0}, "huge_pages": {"fresh": 50.0, "refault": 5.0}},
              {"small_pages": None, "huge_pages": None},
              {"small_pages": {"fresh": 300.0, "refault": 12.0}, "huge_pages": None}]
    line = probe_line(rounds)
    assert "(3 rounds of" in line and "never touched 200 (100-300) in 4 KB pages and 50 (50-50) in 2 MB" in line
    assert "just freed 11 (10-12) and 5 (5-5)." in line
    assert "never touched the probe failed in 4 KB" in probe_line([{"small_pages": None, "huge_pages": None}])


def test_setup_timeline_times_every_step_of_a_fit(monkeypatch):
    from surprise_torch import train_on_arrays
    from surprise_torch_benchmarks.setup_timeline import STEPS, timed

    rows = []
    timed(rows, monkeypatch.setattr)
    rng = np.random.default_rng(0)
    keys = rng.choice(40 * 30, 300, replace=False)
    train_on_arrays("svd", keys // 30, keys % 30, rng.integers(1, 6, 300).astype(float), layout="sparse",
                    n_factors=3, n_epochs=1, random_state=0)
    # Every step ran (a rename in the library fails here, not as a missing row), each timed once per call.
    assert {name for name, *_ in rows} == {path for _, path in STEPS}
    assert all(start <= end and faults >= 0 for _, start, end, faults in rows)


def test_setup_timeline_prints_one_timeline_per_fit_of_the_process(monkeypatch, capsys):
    import surprise_torch_benchmarks.setup_timeline as setup_timeline

    timed = setup_timeline.timed
    monkeypatch.setattr(setup_timeline, "timed", lambda rows: timed(rows, monkeypatch.setattr))
    assert setup_timeline.main(["--shape", "ml-latest-small", "--epochs", "2", "--fits", "2"]) == 0
    fresh, later = capsys.readouterr().out.split("TorchSVD, ")[1:]
    assert fresh.startswith("ml-latest-small shape, one fit in a fresh process")
    assert later.startswith("ml-latest-small shape, fit 2 of the same process")
    for timeline in (fresh, later):  # each fit's own steps, not the first fit's again
        names = [line.split(" | ")[0].lstrip("| ") for line in timeline.splitlines()[3:]]
        assert set(names) == {path for _, path in setup_timeline.STEPS} | {"epoch 1", "epoch 2"}
        assert names.count("epoch 1") == 1 and names.count("as_rating_arrays") == 1


def test_a_partial_workflows_run_without_earlier_results_stops_before_running(tmp_path, monkeypatch, capsys):
    # It used to run the named sections (minutes), then exit 1 for want of the others' earlier results.
    import surprise_torch_benchmarks.workflows as workflows

    monkeypatch.setattr(workflows, "_load", lambda: pytest.fail("loaded data before checking the sections"))
    with pytest.raises(SystemExit) as exit_info:
        workflows.main(["--out", str(tmp_path), "--sections", "scales"])
    assert exit_info.value.code == 2 and "no earlier results for ['anti_testset'" in capsys.readouterr().err
