"""Run storage and versioned partition checkpoints, on a local path, a ``file://`` URI and
a real S3-compatible server (moto's server mode on loopback, spoken to by pyarrow's own
S3 client): round trips, the commit point, crash consistency, corruption, garbage
collection."""

from __future__ import annotations

import pickle
import uuid

import numpy as np
import pyarrow.fs as pafs
import pytest

from graphrec.run.storage import VERSION_FILE, PartitionCheckpoints, RunStorage, StaleWrite, StorageError

from tests.conftest import BUCKET, KEY, REGION, SECRET, s3_uri  # the s3_server fixture lives there too


@pytest.fixture(params=["local", "file_uri", "s3"])
def storage(request, tmp_path) -> RunStorage:
    """A fresh, empty run root on each backend."""
    if request.param == "local":
        return RunStorage(tmp_path / "run")
    if request.param == "file_uri":
        return RunStorage(f"file://{tmp_path}/run")
    return RunStorage(s3_uri(request.getfixturevalue("s3_server"), f"run-{uuid.uuid4().hex[:8]}"))


def flip_byte(storage: RunStorage, rel: str, at: int = -1) -> None:
    data = bytearray(storage.get_bytes(rel))
    data[at] ^= 0xFF
    storage.put_bytes(rel, bytes(data))


# ---------------------------------------------------------------- RunStorage


def test_resolves_local_paths_file_uris_and_s3(tmp_path, s3_server):
    local = RunStorage(tmp_path / "r")
    uri = RunStorage(f"file://{tmp_path}/r")
    assert local.is_local and uri.is_local and local.root == uri.root == str(tmp_path / "r")
    local.put_json("a/doc.json", {"x": 1})
    assert uri.get_json("a/doc.json") == {"x": 1} and uri.list() == ["a/doc.json"]
    s3 = RunStorage(s3_uri(s3_server, "resolve"))
    assert not s3.is_local and isinstance(s3.fs, pafs.S3FileSystem) and s3.root == f"{BUCKET}/resolve"
    assert s3.url("a/b.npy") == f"s3://{BUCKET}/resolve/a/b.npy"
    # the same bucket through a configured filesystem instead of a URI
    fs = pafs.S3FileSystem(endpoint_override=s3_server, scheme="http", access_key=KEY, secret_key=SECRET, region=REGION)
    s3.put_json("doc.json", [1, 2])
    assert RunStorage(f"{BUCKET}/resolve", filesystem=fs).get_json("doc.json") == [1, 2]
    with pytest.raises(StorageError, match=r"not a filesystem URI") as err:
        RunStorage("nosuchscheme://user:topsecret@host/x")
    assert "topsecret" not in str(err.value)


def test_arrays_and_json_round_trip(storage):
    rng = np.random.default_rng(0)
    arrays = {
        "emb.npy": rng.standard_normal((1_200_000, 4), dtype=np.float32),  # > one 16 MiB write chunk
        "ids.npy": np.arange(-5, 1000, dtype=np.int64),
        "fortran.npy": np.asfortranarray(rng.standard_normal((7, 3))),
        "empty.npy": np.zeros((0, 8), dtype=np.float16),
        "scalar.npy": np.array(2.5),
        "nested/dir/strided.npy": np.arange(40, dtype=np.int32).reshape(8, 5)[::2, 1:],
    }
    infos = {rel: storage.put_array(rel, a) for rel, a in arrays.items()}
    for rel, a in arrays.items():
        back = storage.get_array(rel, sha256=infos[rel]["sha256"])
        assert back.dtype == a.dtype and back.shape == a.shape and np.array_equal(back, a), rel
        assert not back.flags.writeable
        assert infos[rel]["bytes"] == storage.size(rel) and infos[rel]["shape"] == list(a.shape)
    if storage.is_local:
        assert isinstance(storage.get_array("emb.npy"), np.memmap)
        assert not isinstance(storage.get_array("emb.npy", mmap=False), np.memmap)
    doc = {"epoch": 3, "buckets": [[0, 1], [1, 1]], "name": "twhin é"}
    storage.put_json("meta/run.json", doc)
    assert storage.get_json("meta/run.json") == doc
    storage.put_json("meta/run.json", {"epoch": 4})  # replaced
    assert storage.get_json("meta/run.json") == {"epoch": 4}
    assert storage.list() == sorted([*arrays, "meta/run.json"])
    assert storage.list("nested") == ["nested/dir/strided.npy"] and storage.list("nothing") == []
    storage.delete("ids.npy")
    storage.delete("ids.npy")  # missing is fine
    with pytest.raises(StorageError, match="missing"):
        storage.delete("ids.npy", missing_ok=False)
    assert not storage.exists("ids.npy") and storage.exists("emb.npy")
    with pytest.raises(StorageError, match=r"ids\.npy: missing") as err:
        storage.get_array("ids.npy")
    assert storage.url("ids.npy") in str(err.value)
    with pytest.raises(StorageError, match="missing"):
        storage.get_json("meta/none.json")


def test_bad_paths_contents_and_objects_are_refused(storage):
    for bad in ("../escape.npy", "/abs.npy", "a//b.npy", "a/./b", ""):
        with pytest.raises(StorageError, match="not a path inside the run root"):
            storage.path(bad)
    with pytest.raises(StorageError, match="Python objects"):
        storage.put_array("obj.npy", np.array([{"a": 1}], dtype=object))
    assert not storage.exists("obj.npy")
    storage.put_bytes("text.npy", b"not an array at all")
    with pytest.raises(StorageError, match=r"text\.npy: not a"):
        storage.get_array("text.npy")
    storage.put_bytes("bad.json", b"{oops")
    with pytest.raises(StorageError, match=r"bad\.json: not valid JSON"):
        storage.get_json("bad.json")
    info = storage.put_array("trunc.npy", np.arange(100, dtype=np.float64))
    storage.put_bytes("trunc.npy", storage.get_bytes("trunc.npy")[:-8])
    with pytest.raises(StorageError, match=r"trunc\.npy: sha256 .* does not match"):
        storage.get_array("trunc.npy", sha256=info["sha256"])
    with pytest.raises(StorageError, match=r"trunc\.npy"):  # even unverified, the size is checked
        np.asarray(storage.get_array("trunc.npy"))


def test_storage_pickles_for_workers(storage):
    storage.put_array("x.npy", np.arange(6))
    copy = pickle.loads(pickle.dumps(storage))
    assert copy.uri == storage.uri and np.array_equal(copy.get_array("x.npy"), np.arange(6))


# ---------------------------------------------------------------- versioned checkpoints


def parts(storage):
    return sorted(p for p in storage.list("checkpoint/files"))


def test_whole_checkpoint_commit_and_a_crash_before_the_next(storage):
    ckpt = PartitionCheckpoints(storage, keep=2)
    assert ckpt.head().version == 0 and ckpt.head().files == {}
    v1 = {f"user/{p}/embeddings": np.full((4, 3), p, dtype=np.float32) for p in range(3)}
    with ckpt.transaction(meta={"epoch": 0}) as tx:
        for name, a in v1.items():
            tx.write(name, a)
    head = ckpt.head()
    assert tx.manifest == head and head.version == 1 and head.meta == {"epoch": 0}
    doc = storage.get_json(f"checkpoint/{VERSION_FILE}")
    assert doc["version"] == 1 and set(doc["files"]) == set(v1)
    assert all(len(e["sha256"]) == 64 for e in doc["files"].values())

    # crash: every file of version 2 written, the job dies before the version file is written
    base = ckpt.head()
    written = [ckpt.write(name, a + 100, base=base) for name, a in v1.items()]
    assert {e.version for e in written} == {2}
    # ... or even after the new manifest's history copy, just before the commit point
    storage.put_json("checkpoint/versions/v0000000002.json", {"format": "graphrec-checkpoint/1", "version": 2,
                                                              "files": {}, "meta": {}})
    reader = PartitionCheckpoints(storage)  # a fresh process reading the run
    assert reader.head().version == 1 and reader.versions() == [1]
    for name, a in v1.items():
        assert np.array_equal(reader.read(name), a)
    # resume: the driver drops the uncommitted files, then commits again
    dropped = ckpt.discard_uncommitted()
    assert sorted(dropped) == sorted([e.path for e in written] + ["versions/v0000000002.json"])
    assert len(parts(storage)) == 3
    with ckpt.transaction(meta={"epoch": 1}) as tx:
        for name, a in v1.items():
            tx.write(name, a + 1)
    assert reader.head().version == 2 and reader.head().meta == {"epoch": 1}
    assert all(np.array_equal(reader.read(n), a + 1) for n, a in v1.items())
    assert np.array_equal(reader.read("user/0/embeddings", reader.manifest(1)), v1["user/0/embeddings"])


def test_failed_transaction_commits_nothing_and_removes_its_files(storage):
    ckpt = PartitionCheckpoints(storage)
    with ckpt.transaction() as tx:
        tx.write("rel", np.zeros(3))
    before = storage.list()
    with pytest.raises(RuntimeError, match="worker died"):
        with ckpt.transaction(meta={"epoch": 9}) as tx:
            tx.write("rel", np.ones(3))
            tx.write("user/0/embeddings", np.ones((2, 2)))
            raise RuntimeError("worker died")
    assert storage.list() == before and ckpt.head().version == 1 and ckpt.head().meta == {}
    assert np.array_equal(ckpt.read("rel"), np.zeros(3))


def test_per_bucket_commits_never_mix_a_partial_bucket(storage):
    """Workers write back their bucket's two partitions (embeddings + optimizer state);
    the driver alone commits; a bucket is in the committed state entirely or not at all."""
    ckpt = PartitionCheckpoints(storage, keep=3)
    names = [f"user/{p}/{kind}" for p in range(4) for kind in ("embeddings", "adagrad")]
    with ckpt.transaction(meta={"epoch": 0, "done": []}) as tx:  # initial state
        for n in names:
            tx.write(n, np.zeros((5, 2), dtype=np.float32))

    def train_bucket(base, bucket, value):
        return [ckpt.write(f"user/{p}/{kind}", np.full((5, 2), value, dtype=np.float32), base=base)
                for p in bucket for kind in ("embeddings", "adagrad")]

    # two workers train disjoint buckets (0,1) and (2,3) concurrently from the same committed state
    base = ckpt.head()
    a, b = train_bucket(base, (0, 1), 1.0), train_bucket(base, (2, 3), 2.0)
    ckpt.commit(b, meta={"epoch": 0, "done": [[2, 3]]})
    ckpt.commit(a, meta={"epoch": 0, "done": [[2, 3], [0, 1]]})
    head = ckpt.head()
    assert head.version == 3 and head.meta["done"] == [[2, 3], [0, 1]]
    assert [float(ckpt.read(f"user/{p}/embeddings")[0, 0]) for p in range(4)] == [1.0, 1.0, 2.0, 2.0]

    # bucket (0,2) of the next round: the worker writes partition 0 and dies before partition 2
    zombie = ckpt.write("user/0/embeddings", np.full((5, 2), 9.0, dtype=np.float32), base=head)
    reader = PartitionCheckpoints(storage)
    assert reader.head().version == 3
    assert float(reader.read("user/0/embeddings")[0, 0]) == 1.0  # not the half-finished bucket's 9
    # the bucket is re-run by another worker and committed as a whole
    rerun = train_bucket(ckpt.head(), (0, 2), 3.0)
    ckpt.commit(rerun, meta={"epoch": 0, "done": [[2, 3], [0, 1], [0, 2]]})
    # the dead worker's late report cannot overwrite it
    late = r"user/0/embeddings.* version 3 was written from version 2, but version 3 is committed"
    with pytest.raises(StaleWrite, match=late):
        ckpt.commit([zombie])
    with pytest.raises(StaleWrite, match="built on version 3"):
        ckpt.commit([], base_version=3)
    head = ckpt.head()
    assert head.version == 4 and head.files["user/0/embeddings"].version == 3
    assert [float(ckpt.read(f"user/{p}/adagrad")[0, 0]) for p in range(4)] == [3.0, 1.0, 3.0, 2.0]
    # a commit that names a file that was never (completely) written is refused
    lost = ckpt.write("user/1/embeddings", np.ones((5, 2), dtype=np.float32), base=head)
    storage.delete(f"checkpoint/{lost.path}")
    with pytest.raises(StorageError, match=r"missing; cannot commit 'user/1/embeddings'"):
        ckpt.commit([lost])
    assert ckpt.head() == head
    with pytest.raises(StorageError, match="checkpoint names"):
        ckpt.write("../x", np.ones(1))


def test_corruption_and_missing_files_are_named(storage):
    ckpt = PartitionCheckpoints(storage)
    with ckpt.transaction() as tx:
        e = tx.write("user/0/embeddings", np.arange(20, dtype=np.float32).reshape(5, 4))
        tx.write("relations", np.ones((3, 4), dtype=np.float32))
    rel = f"checkpoint/{e.path}"
    flip_byte(storage, rel)
    with pytest.raises(StorageError, match="does not match the recorded") as err:
        ckpt.read("user/0/embeddings")
    assert storage.url(rel) in str(err.value)
    assert np.array_equal(ckpt.read("relations"), np.ones((3, 4)))  # the other file is fine
    storage.delete(rel)
    with pytest.raises(StorageError, match="missing") as err:
        ckpt.read("user/0/embeddings")
    assert storage.url(rel) in str(err.value)
    with pytest.raises(StorageError, match=r"no 'user/9/embeddings' in checkpoint version 1"):
        ckpt.read("user/9/embeddings")
    storage.put_bytes(f"checkpoint/{VERSION_FILE}", b'{"version": 1}')
    with pytest.raises(StorageError, match="not a graphrec checkpoint manifest") as err:
        ckpt.head()
    assert storage.url(f"checkpoint/{VERSION_FILE}") in str(err.value)


def test_gc_keeps_the_last_k_versions_and_spares_files_in_flight(storage):
    ckpt = PartitionCheckpoints(storage, keep=2)
    with ckpt.transaction() as tx:
        tx.write("relations", np.zeros(2))
        tx.write("user/0/embeddings", np.zeros((2, 2)))
    in_flight = ckpt.write("user/1/embeddings", np.ones((2, 2)))  # a worker still busy
    for step in range(1, 5):  # only partition 0 changes: relations stays at its version-1 file
        ckpt.commit([ckpt.write("user/0/embeddings", np.full((2, 2), step))], meta={"step": step})
    head = ckpt.head()
    assert head.version == 5 and ckpt.versions() == [4, 5]
    kept = {head.files["relations"].path, head.files["user/0/embeddings"].path,
            ckpt.manifest(4).files["user/0/embeddings"].path, in_flight.path}
    assert {p.removeprefix("checkpoint/") for p in parts(storage)} == kept
    assert storage.list("checkpoint/versions") == ["checkpoint/versions/v0000000004.json",
                                                   "checkpoint/versions/v0000000005.json"]
    assert float(ckpt.read("user/0/embeddings", ckpt.manifest(4))[0, 0]) == 3.0
    with pytest.raises(StorageError, match="version 2 was garbage-collected"):
        ckpt.manifest(2)
    with pytest.raises(StorageError, match="version 7 is not committed"):
        ckpt.manifest(7)
    # the late worker's partition still commits; then nothing is left to discard
    ckpt.commit([in_flight])
    assert np.array_equal(ckpt.read("user/1/embeddings"), np.ones((2, 2)))
    assert ckpt.discard_uncommitted() == [] and ckpt.versions() == [5, 6]


def test_discard_uncommitted_removes_a_killed_local_write(tmp_path):
    storage = RunStorage(tmp_path / "run")
    ckpt = PartitionCheckpoints(storage)
    with ckpt.transaction() as tx:
        tx.write("user/0/embeddings", np.zeros(3))
    tmp = tmp_path / "run" / "checkpoint" / "files" / "user" / "0" / ".embeddings.v2.0123abcd.npy.tmp-89abcdef"
    tmp.write_bytes(b"half")
    foreign = tmp_path / "run" / "checkpoint" / "files" / "notes.txt"  # not ours: never deleted
    foreign.write_text("mine")
    assert ckpt.discard_uncommitted() == ["files/user/0/.embeddings.v2.0123abcd.npy.tmp-89abcdef"]
    assert not tmp.exists() and foreign.exists() and ckpt.head().version == 1


def test_read_into_fills_a_given_buffer_and_names_corruption(storage):
    ckpt = PartitionCheckpoints(storage, keep=2)
    arr = np.arange(12 * 5, dtype=np.float32).reshape(12, 5)
    ckpt.commit([ckpt.write("t/0/emb", arr)])
    out = np.zeros((20, 5), np.float32)
    ckpt.read_into("t/0/emb", out[4:16])  # a slice of a bigger table: rows 4..15
    np.testing.assert_array_equal(out[4:16], arr)
    assert not out[:4].any() and not out[16:].any()
    with pytest.raises(StorageError, match=r"holds \(12, 5\)"):
        ckpt.read_into("t/0/emb", np.zeros((11, 5), np.float32))
    flip_byte(storage, f"checkpoint/{ckpt.head().files['t/0/emb'].path}")
    with pytest.raises(StorageError, match="sha256"):
        ckpt.read_into("t/0/emb", out[4:16])
    ckpt.read_into("t/0/emb", out[4:16], verify=False)  # unchecked read still fills it


def test_pinned_version_survives_gc_and_rollback_makes_it_the_head(storage):
    ckpt = PartitionCheckpoints(storage, keep=2)
    ckpt.commit([ckpt.write("a", np.full(3, 1.0))], {"epoch": 1})
    best = ckpt.commit([ckpt.write("a", np.full(3, 2.0))], {"epoch": 2, "pinned": [2]}).version
    for v in (3.0, 4.0, 5.0):
        ckpt.commit([ckpt.write("a", np.full(3, v))], {"epoch": int(v), "pinned": [best]})
    assert np.array_equal(ckpt.read("a", ckpt.manifest(best)), np.full(3, 2.0))  # gc kept it
    head = ckpt.rollback(best, {"epoch": 5, "pinned": []})
    assert head.version == 6 and np.array_equal(ckpt.read("a"), np.full(3, 2.0))
    ckpt.commit([ckpt.write("a", np.full(3, 7.0))])  # writing on after a rollback works
    assert np.array_equal(ckpt.read("a"), np.full(3, 7.0))
