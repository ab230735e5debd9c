"""graphrec/io.py: outputs built beside the destination, --overwrite only of graphrec's
own directories, one job per output (lock), stale locks and temp dirs taken over."""

import json
import os
import subprocess
import sys
import time

import pytest

from graphrec.cli import main
from graphrec.errors import GraphrecError
from graphrec.io import MARKER, OutputLock, atomic_dir, is_graphrec_dir, portable_path, resolve_portable
from tests.conftest import ROOT


def test_atomic_dir_swaps_in_only_on_success(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out, kind="test") as d:
        (d / "a").write_text("1")
    assert (out / "a").read_text() == "1" and is_graphrec_dir(out)
    with pytest.raises(RuntimeError), atomic_dir(out, overwrite=True) as d:
        (d / "a").write_text("2")
        raise RuntimeError("failed half way")
    assert (out / "a").read_text() == "1"  # the old output survives a failed replacement
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp dir or lock left behind
    with atomic_dir(out, overwrite=True) as d:
        (d / "b").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b"]


def test_overwrite_never_replaces_what_graphrec_did_not_write(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(GraphrecError, match="mine"), atomic_dir(user, overwrite=overwrite):
            pass
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(GraphrecError, match="file"), atomic_dir(tmp_path / "file.txt", overwrite=True):
        pass
    assert (user / "thesis.tex").read_text() == "precious" and (tmp_path / "file.txt").read_text() == "x"
    with atomic_dir(tmp_path / "empty_ok") as d:  # an empty directory is free to use
        (d / "x").write_text("1")


def test_stale_temp_siblings_of_a_killed_job_are_removed(tmp_path):
    out = tmp_path / "out"
    (tmp_path / ".out.tmp-deadbeef").mkdir()  # left by a SIGKILLed job
    (tmp_path / ".out.tmp-deadbeef" / "half").write_text("partial")
    with atomic_dir(out) as d:
        (d / "a").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from graphrec.io import OutputLock
lock = OutputLock({path!r}).acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_lock_refuses_a_second_job_and_names_the_holder(tmp_path):
    target = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), path=str(target))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(GraphrecError, match=rf"in use by another graphrec job \(pid {proc.pid}"):
            OutputLock(target).acquire()
    finally:
        proc.kill()
        proc.wait()
    # the holder died (SIGKILL): its lock is taken over
    with OutputLock(target):
        assert json.loads((tmp_path / ".run.lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".run.lock").exists()


def test_second_train_on_the_same_run_directory_exits_2(small_pins_graph, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dim: 8\nepochs: 40\nbatch_size: 64\n")
    argv = ["-q", "train", "twhin", "--config", str(cfg), "--graph", str(small_pins_graph.path), "--out",
            str(tmp_path / "run"), "--no-ray"]
    first = subprocess.Popen([sys.executable, "-m", "graphrec.cli", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (tmp_path / ".run.lock").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second one started"
        assert main([*argv, "--overwrite"]) == 2  # the second one, in this process
        err = capsys.readouterr().err
        assert f"pid {first.pid}" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    finally:
        first.kill()
        first.wait()


def test_run_overwrite_leaves_a_users_directory_untouched(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code = main(["-q", "run", str(ROOT / "configs" / "quickstart.yaml"), "--out", str(out), "--overwrite"])
    assert code == 2
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_portable_reference_survives_moving_both(tmp_path):
    (tmp_path / "a" / "graph").mkdir(parents=True)
    (tmp_path / "a" / "run").mkdir()
    ref = portable_path(tmp_path / "a" / "graph", tmp_path / "a" / "run")
    os.rename(tmp_path / "a", tmp_path / "b")
    assert resolve_portable(ref, tmp_path / "b" / "run") == (tmp_path / "b" / "graph").resolve()


def test_a_file_merely_named_like_a_manifest_proves_nothing(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "manifest.json").write_text('{"title": "my own manifest"}')
    (mine / "thesis.tex").write_text("precious")
    assert not is_graphrec_dir(mine)
    with pytest.raises(GraphrecError, match="did not write"), atomic_dir(mine, overwrite=True):
        pass
    assert (mine / "thesis.tex").read_text() == "precious"
    (mine / "manifest.json").write_text('{"format": "graphrec-embeddings"}')  # an export from before the marker
    assert is_graphrec_dir(mine)


def test_a_symlinked_output_is_refused_before_any_work(tmp_path):
    with atomic_dir(tmp_path / "real") as d:
        (d / "a").write_text("1")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(GraphrecError, match="symbolic link"), atomic_dir(tmp_path / "link", overwrite=True):
        raise AssertionError("the work must not start")
    assert (tmp_path / "real" / "a").read_text() == "1"


def test_an_old_output_moved_aside_by_a_killed_swap_is_restored(tmp_path):
    # killed between "rename out -> .out.old-*" and "rename .out.tmp-* -> out"
    with atomic_dir(tmp_path / "out") as d:
        (d / "a").write_text("old")
    os.rename(tmp_path / "out", tmp_path / ".out.old-12345678")
    (tmp_path / ".out.tmp-87654321").mkdir()
    with pytest.raises(GraphrecError, match="already exists"), atomic_dir(tmp_path / "out"):
        raise AssertionError("the work must not start")
    assert (tmp_path / "out" / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
