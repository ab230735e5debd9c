"""Checkpoints carry checksums; the newest valid one is taken."""

import torch

from graphrec.run.checkpoint import CheckpointDir, CorruptCheckpoint, load_checkpoint, save_checkpoint


def test_checksum_detects_truncation_and_missing_sum(tmp_path):
    save_checkpoint(tmp_path / "c", {"w": torch.arange(1000.0), "epoch": 3})
    assert load_checkpoint(tmp_path / "c")["epoch"] == 3
    p = tmp_path / "c" / "state.pt"
    p.write_bytes(p.read_bytes()[:-10])
    try:
        load_checkpoint(tmp_path / "c")
    except CorruptCheckpoint as err:
        assert "sha256" in str(err) and str(p) in str(err)
    else:
        raise AssertionError("a truncated checkpoint loaded")
    (tmp_path / "c" / "state.pt.sha256").unlink()
    try:
        load_checkpoint(tmp_path / "c")
    except CorruptCheckpoint as err:
        assert "no checksum" in str(err)


def test_checkpoint_dir_keeps_the_newest_and_skips_corrupt(tmp_path, caplog):
    d = CheckpointDir(tmp_path, keep=2)
    for epoch, step in ((0, 5), (1, 0), (1, 5)):
        d.save(epoch, step, {"at": torch.tensor([epoch, step])})
    assert d.tags() == [CheckpointDir.tag(1, 0), CheckpointDir.tag(1, 5)]
    tag, state = d.latest()
    assert tag == CheckpointDir.tag(1, 5) and state["at"].tolist() == [1, 5]
    (tmp_path / tag / "state.pt").write_bytes(b"garbage")
    with caplog.at_level("WARNING"):
        tag, state = d.latest()
    assert tag == CheckpointDir.tag(1, 0) and "skipping corrupt checkpoint" in caplog.text
