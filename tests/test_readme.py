"""The README's commands are the ones CI and users run."""

from pathlib import Path

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
