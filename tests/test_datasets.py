"""MovieLens-100K without GroupLens: every source tried in turn, and clear failure."""

import io
import zipfile

import pytest
from surprise.builtin_datasets import BUILTIN_DATASETS, BuiltinDataset

import surprise_torch.datasets as ds


def inter_text(n=ds.ML100K_N_RATINGS):
    rows = [f"{1 + k % 943}\t{1 + k % 1682}\t{1 + k % 5}\t{880000000 + k}" for k in range(n)]
    return "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "\n".join(rows) + "\n"


@pytest.fixture
def tmp_ml100k(tmp_path, monkeypatch):
    """Point Surprise's ml-100k entry at an empty folder for the test's duration."""
    path = tmp_path / "ml-100k" / "ml-100k" / "u.data"
    monkeypatch.setitem(BUILTIN_DATASETS, "ml-100k", BuiltinDataset(
        url="http://unreachable.invalid/ml-100k.zip", path=str(path),
        reader_params=BUILTIN_DATASETS["ml-100k"].reader_params))
    return path


def test_write_udata_converts_recbole_format(tmp_path):
    path = tmp_path / "sub" / "u.data"
    ds.write_udata(inter_text(), path)
    lines = path.read_text().splitlines()
    assert len(lines) == ds.ML100K_N_RATINGS
    assert lines[0] == "1\t1\t1\t880000000"
    assert not list(path.parent.glob("*.partial"))


@pytest.mark.parametrize("text,match", [
    ("196\t242\t3\t881250949\n", "header"),
    (inter_text(10), "expected 100000 ratings"),
    (inter_text().replace("\t1\t880000000", "\t9\t880000000"), "unexpected rating line"),
])
def test_write_udata_refuses_anything_else(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        ds.write_udata(text, tmp_path / "u.data")
    assert not (tmp_path / "u.data").exists()


def test_falls_back_to_the_recbole_wheel(tmp_ml100k, monkeypatch):
    def fake_pip(cmd, **kwargs):
        dest = cmd[cmd.index("--dest") + 1]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(ds.RECBOLE_ML100K, inter_text())
        (ds.Path(dest) / "recbole-1.2.1-py3-none-any.whl").write_bytes(buf.getvalue())
        assert ds.RECBOLE_REQUIREMENT in cmd and "download" in cmd

    monkeypatch.setattr(ds.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(ds.subprocess, "run", fake_pip)
    data = ds.load_builtin("ml-100k", timeout=2)
    assert tmp_ml100k.is_file()
    assert len(data.raw_ratings) == ds.ML100K_N_RATINGS
    # From now on, Surprise's own loader finds the file without downloading.
    from surprise import Dataset
    assert len(Dataset.load_builtin("ml-100k", prompt=False).raw_ratings) == ds.ML100K_N_RATINGS


def test_clear_error_when_no_source_answers(tmp_ml100k, monkeypatch):
    def no_pip(cmd, **kwargs):
        raise ds.subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(ds.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(ds.subprocess, "run", no_pip)
    with pytest.raises(RuntimeError) as info:
        ds.load_builtin("ml-100k", timeout=2)
    message = str(info.value)
    assert "GroupLens" in message and "recbole==1.2.1" in message and str(tmp_ml100k) in message


def test_no_download_and_bad_names(tmp_ml100k):
    with pytest.raises(FileNotFoundError, match="download=True"):
        ds.load_builtin("ml-100k", download=False)
    with pytest.raises(ValueError, match="ml-100k"):
        ds.load_builtin("ml-10k")


def test_grouplens_download_is_tried_first(tmp_ml100k, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t5\t1\n2\t1\t3\t2\n")
    monkeypatch.setattr(ds, "get_dataset_dir", lambda: str(tmp_ml100k.parents[2]))
    monkeypatch.setattr(ds.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(buf.getvalue()))
    monkeypatch.setattr(ds, "_ml100k_from_recbole", lambda path: pytest.fail("fell back needlessly"))
    assert len(ds.load_builtin("ml-100k").raw_ratings) == 2
