"""cxr/dashboard/state.py: where the dashboard looks (runs, data, worklist) and which folders
are datasets."""
from __future__ import annotations

from cxr.dashboard.state import Roots, find_datasets
from cxr.dashboard.status import count_images


def test_roots_from_env_and_defaults(tmp_path):
    r = Roots.from_env({}, cwd=tmp_path)
    assert (r.runs, r.data, r.worklist) == (tmp_path / "checkpoints", tmp_path / "data",
                                            tmp_path / "data" / "worklist.sqlite")
    r = Roots.from_env({"CXR_RUNS_DIR": str(tmp_path / "r"), "CXR_DATA_DIR": str(tmp_path / "d"),
                        "CXR_WORKLIST": str(tmp_path / "w.db")}, cwd=tmp_path)
    assert (r.runs, r.data, r.worklist) == (tmp_path / "r", tmp_path / "d", tmp_path / "w.db")


def test_find_datasets_and_count_images(tmp_path):
    for name, rows in (("demo", 3), ("nih/release", 2)):
        d = tmp_path / name
        (d / "images").mkdir(parents=True)
        rows_text = "".join(f"{i}.png,No Finding\n" for i in range(rows))
        (d / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels\n" + rows_text)
    (tmp_path / "demo" / "cache").mkdir()
    found = find_datasets(tmp_path)
    assert found == [tmp_path / "demo", tmp_path / "nih" / "release"]
    assert [count_images(d) for d in found] == [3, 2]


def test_relative_roots_resolve_against_the_start_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = Roots.from_env({"CXR_RUNS_DIR": "runs", "CXR_DATA_DIR": "./d/../data"})
    assert (r.runs, r.data, r.worklist) == (tmp_path / "runs", tmp_path / "data",
                                            tmp_path / "data" / "worklist.sqlite")
    # empty: unset
    assert Roots.from_env({"CXR_DATA_DIR": ""}, cwd=tmp_path).data == tmp_path / "data"


def _dataset(folder, name="Data_Entry_2017.csv"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("Image Index,Finding Labels\n")
    return folder


def test_datasets_two_levels_deep_not_inside_one_and_not_hidden(tmp_path):
    top = _dataset(tmp_path / "nih", "Data_Entry_2017_v2020.csv.gz")
    _dataset(top / "images_001")  # inside a dataset: not a dataset of its own
    deep = _dataset(tmp_path / "a" / "b")
    _dataset(tmp_path / "a" / "b" / "c" / "d")  # below the depth limit from the root
    _dataset(tmp_path / ".trash" / "old")
    (tmp_path / "notes.txt").write_text("not a folder")
    assert find_datasets(tmp_path) == [deep, top]
    assert find_datasets(tmp_path, max_depth=1) == [top]
    assert find_datasets(top) == [top]  # the root itself can be a dataset
    assert find_datasets(tmp_path / "missing") == []


def test_a_worklist_url_is_kept_as_given(tmp_path):
    url = "postgresql+psycopg://cxr:pw@db.example.org:5432/worklist"
    assert Roots.from_env({"CXR_WORKLIST": url}, cwd=tmp_path).worklist == url
