import shutil
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lume import data
from lume.data.records import join_document
from lume.errors import InputError, LumeError
from tests.conftest import lume_rows, write_jsonl


def test_release_counts_match_the_published_numbers(data_dir):
    loaded = data.load(data_dir)
    by_split = {s: [r for r in loaded.records if r.split == s] for s in data.SPLITS}
    assert len(by_split["forget"]) == 2732 and len(by_split["retain"]) == 2734
    docs = {s: [d for d in loaded.documents if d.split == s] for s in data.SPLITS}
    assert len(docs["forget"]) == 866 and len(docs["retain"]) == 867
    assert {len(d.qa) for d in loaded.documents if d.task == "Task2"} == {5}
    assert {len(d.qa) for d in loaded.documents if d.task != "Task2"} == {1}


def test_ids_with_quotes_keep_their_document_id(data_dir):
    loaded = data.load(data_dir)
    quoted = [r for r in loaded.records if '"' in r.id]
    assert len(quoted) > 400
    assert all(r.id == r.doc_id + r.kind + r.id[-1] for r in quoted)


def test_semeval_folds_are_subsets_of_the_release(data_dir):
    release = {r.id: r for r in data.load(data_dir).records}
    fold = data.load(data_dir, "semeval-validation")
    assert len(fold.records) == 254 + 278
    assert all(release[r.id].output == r.output and release[r.id].split == r.split
               for r in fold.records)
    assert {r.fold for r in fold.records} == {"validation"}


def test_documents_rebuild_the_organisers_mia_members(data_dir):
    release = data.load(data_dir)
    members = [d for d in data.load_mia(data_dir) if d.member]
    texts = {d.text for d in release.documents}
    assert len(members) == 150  # SOURCES.md says 149: wc -l misses the unterminated last line
    assert all(m.text in texts for m in members)


def test_join_document_adds_one_space_only_where_missing():
    assert join_document("a b", "c") == "a b c"
    assert join_document("a b ", "c") == "a b c"
    assert join_document("a b", " c") == "a b c"


def test_parse_id():
    assert data.parse_id('"x"y"sc1') == ('"x"y"', "sc", 1)
    assert data.parse_id("docqa4") == ("doc", "qa", 4)
    assert data.parse_id("doc") is None and data.parse_id("docqa") is None


def test_selection_is_seeded_stratified_and_keeps_documents_whole(data_dir):
    documents = data.load(data_dir).documents
    first = data.select_documents(documents, per_task=3, held_out_per_task=2, seed=7)
    again = data.select_documents(list(reversed(documents)), per_task=3, held_out_per_task=2, seed=7)
    other = data.select_documents(documents, per_task=3, held_out_per_task=2, seed=8)
    ids = lambda docs: [d.doc_id for d in docs]  # noqa: E731
    assert ids(first.chosen) == ids(again.chosen) and ids(first.held_out) == ids(again.held_out)
    assert ids(first.chosen) != ids(other.chosen)
    assert len(first.chosen) == 3 * 3 * 2 and len(first.held_out) == 3 * 2
    assert not set(ids(first.chosen)) & set(ids(first.held_out))
    for task in data.TASKS:
        for split in data.SPLITS:
            assert len([d for d in first.chosen if d.task == task and d.split == split]) == 3
    assert all(len(d.qa) == 5 for d in first.chosen if d.task == "Task2")


def test_data_dir_resolution_order(tmp_path, monkeypatch, data_dir):
    (tmp_path / "lume").mkdir()
    (tmp_path / "lume" / "forget.jsonl").write_text("")
    monkeypatch.setenv("LUME_DATA_DIR", str(tmp_path))
    assert data.resolve_data_dir() == tmp_path.resolve()
    assert data.resolve_data_dir(data_dir) == data_dir
    monkeypatch.setenv("LUME_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(Exception, match="LUME_DATA_DIR"):
        data.resolve_data_dir()


BAD_JSONL = {
    "malformed": (['{"id": "a"sc1"}'], 1, None, "malformed JSON"),
    "missing field": ([{"id": "asc1", "input": "x", "task": "Task1"}], 1, "output", "missing"),
    "empty field": ([{"id": "asc1", "input": "  ", "output": "y", "task": "Task1"}], 1,
                    "input", "empty"),
    "unknown task": ([{"id": "asc1", "input": "x", "output": "y", "task": "Task9"}], 1,
                     "task", "unknown task"),
    "duplicate id": (lume_rows("a") + [lume_rows("a")[1]], 3, "id", "duplicate id"),
    "bad suffix": ([{"id": "a-xy1", "input": "x", "output": "y", "task": "Task1"}], 1, "id",
                   "neither sc<N> nor qa<N>"),
    "orphan qa": (lume_rows("a") + lume_rows("b")[1:], 3, "id", "no sc row"),
    "not an object": (["[1, 2]"], 1, None, "expected a JSON object"),
}


@pytest.mark.parametrize("case", sorted(BAD_JSONL))
def test_bad_jsonl_is_located_by_line_and_field(tmp_path, case):
    rows, line, field, message = BAD_JSONL[case]
    path = write_jsonl(tmp_path / "forget.jsonl", lume_rows("ok") + rows)
    line += 2  # the good document comes first
    with pytest.raises(InputError) as raised:
        data.read_records(path)
    text = str(raised.value)
    assert text.startswith(f"{path}:{line}")
    assert message in text
    if field:
        assert f"field '{field}'" in text


def test_empty_and_blank_files(tmp_path):
    empty = tmp_path / "forget.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="empty file"):
        data.read_records(empty)
    blank = write_jsonl(tmp_path / "retain.jsonl", ["", "  "])
    with pytest.raises(InputError, match="empty file"):
        data.read_records(blank)


def test_unreadable_and_bad_parquet(tmp_path):
    broken = tmp_path / "forget_train.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(InputError, match="unreadable parquet"):
        data.read_records(broken)
    rows = lume_rows("a", split="forget")
    rows[1]["task"] = "task2"
    bad = tmp_path / "forget_validation.parquet"
    pq.write_table(pa.Table.from_pylist(rows), bad)
    with pytest.raises(InputError, match=r"row 2: field 'task'"):
        data.read_records(bad)


def test_good_file_reads_with_split_from_its_name(tmp_path):
    path = write_jsonl(tmp_path / "retain.jsonl", lume_rows("d", "Task2", n_qa=5))
    records = data.read_records(path)
    assert [r.kind for r in records] == ["sc"] + ["qa"] * 5
    assert {r.split for r in records} == {"retain"}


def _lume(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "lume", *args], capture_output=True, text=True,
                          **kwargs)


def test_cli_validate_reports_one_line_and_exit_2(tmp_path):
    path = write_jsonl(tmp_path / "forget.jsonl", lume_rows("a") + ['{"id": broken'])
    result = _lume("data", "validate", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"{path}:3: malformed JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_info_prints_the_release_counts(data_dir):
    result = _lume("data", "info", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("forget" in line and "all" in line and "2732" in line and "866" in line for line in lines)
    assert any("retain" in line and "all" in line and "2734" in line and "867" in line for line in lines)


def test_fetch_reports_offline_clearly(tmp_path):
    from lume.data.fetch import fetch_release
    from lume.errors import LumeError

    with pytest.raises(LumeError, match="cannot download .*offline"):
        fetch_release(tmp_path, base_url="http://127.0.0.1:9/")
    assert not list((tmp_path / "lume").iterdir())


def test_fetch_rejects_a_checksum_mismatch(tmp_path):
    from lume.data.fetch import fetch_release
    from lume.errors import LumeError

    source = tmp_path / "src"
    source.mkdir()
    (source / "forget.jsonl").write_text("tampered\n")
    with pytest.raises(LumeError, match="checksum mismatch"):
        fetch_release(tmp_path / "out", base_url=source.as_uri() + "/")
    assert not (tmp_path / "out" / "lume" / "forget.jsonl").exists()


def test_a_tuning_part_is_set_apart_from_the_test_part_and_recorded(data_dir, tmp_path):
    """tuning_per_task more documents per task and split (and held out per task) form the tuning
    part; the parts never share a document, and the manifest gives both back."""
    from lume import data
    from lume.data.manifest import TargetManifest, read_manifest

    documents = data.load(data_dir).documents
    plain = data.select_documents(documents, 2, 1, seed=3)
    assert plain.tuning is None and plain.part("test") is plain
    with pytest.raises(LumeError, match="no tuning documents"):
        plain.part("tuning")
    both = data.select_documents(documents, 2, 1, seed=3, tuning_per_task=1)
    test, tuning = both.part("test"), both.part("tuning")
    key = lambda docs: {(d.split, d.doc_id) for d in docs}  # noqa: E731
    assert len(test.chosen) == 12 and len(tuning.chosen) == 6 and len(test.held_out) == len(tuning.held_out) == 3
    assert not key(test.chosen) & key(tuning.chosen) and not key(test.held_out) & key(tuning.held_out)
    assert key(test.chosen) | key(tuning.chosen) == key(both.chosen)
    assert {(d.task, d.split) for d in tuning.chosen} == {(t, s) for t in data.TASKS for s in ("forget", "retain")}
    for selection, folder in ((both, tmp_path / "with"), (plain, tmp_path / "without")):
        folder.mkdir()
        TargetManifest.from_selection(selection, base_model="b", data_fingerprint="f").write(folder)
        read = read_manifest(folder).selection(documents)
        assert key(read.part("test").chosen) == key(selection.part("test").chosen)
    assert key(read_manifest(tmp_path / "with").selection(documents).part("tuning").held_out) == key(tuning.held_out)
    assert "tuning" not in json.loads((tmp_path / "without" / "lume_target.json").read_text())  # as older versions


def test_a_released_target_has_the_semeval_public_folds_as_its_tuning_part(data_dir, tiny_model_dir, tmp_path):
    """A model without lume_target.json memorised the whole release: the SemEval teams tuned on the
    public folds (train and validation) and were scored on the rest, so those are its two parts,
    in evaluation, in unlearning and in a sweep; data of one fold alone has no tuning part."""
    from lume import data
    from lume.data.manifest import target_selection
    from lume.stages.evaluation import EvalConfig
    from lume.stages.evaluation.evaluator import _selection
    from lume.stages.unlearning import manifest_records
    from lume.study.sweep import tuning_part

    release = data.load(data_dir)
    public = {d.doc_id for fold in ("semeval-train", "semeval-validation") for d in data.load(data_dir, fold).documents}
    parts = target_selection(None, release)
    tuning, test = parts.part("tuning"), parts.part("test")
    assert {d.doc_id for d in tuning.chosen} == public and not public & {d.doc_id for d in test.chosen}
    assert len(tuning.chosen) + len(test.chosen) == len(release.documents) and not test.held_out
    for part, inside in (("tuning", True), ("test", False)):
        forget, retain = manifest_records(tiny_model_dir, release, part)
        assert forget and retain and all((data.parse_id(r.id)[0] in public) == inside for r in forget + retain)
        scored = _selection(None, release, EvalConfig(part=part, docs_per_task=2, seed=1)).chosen
        assert len(scored) == 12 and all((d.doc_id in public) == inside for d in scored)
    assert tuning_part(tiny_model_dir, release) == "tuning"
    assert target_selection(None, data.load(data_dir, "semeval-train")).tuning is None
    shutil.copytree(data_dir / "lume", tmp_path / "lume")  # the release alone: no fold, no tuning part
    assert target_selection(None, data.load(tmp_path)).tuning is None
