"""Checkpoint stores: a local directory and object storage (a real S3-compatible
server, moto's, started by the tests) behave alike; fencing picks the newest owner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_checkpoint import checkpointer, feed, small_engine

from streammeta.errors import StoreError
from streammeta.persistence.checkpoint import CheckpointStore
from streammeta.persistence.spill import SpillStore
from streammeta.persistence.store import FileStore, FsspecStore, LocalStore, open_store


@pytest.fixture(params=["local", "file-url", "s3"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> FileStore:
    if request.param == "local":
        return open_store(str(tmp_path / "ckpt"))
    if request.param == "file-url":
        return open_store(f"file://{tmp_path}/ckpt")
    endpoint = request.getfixturevalue("s3_endpoint")
    url = request.getfixturevalue("s3_url")
    return open_store(url, {"endpoint_url": endpoint})


def test_a_store_lists_reads_writes_and_deletes(files: FileStore) -> None:
    assert files.list() == []
    files.write_atomic("a.smck", b"first")
    files.write_atomic("a.smck", b"second")  # replaced whole
    files.write_atomic("spill/m/b.smck", b"x" * 100_000)
    assert sorted(files.list()) == ["a.smck"]
    assert files.list("spill/m") == ["spill/m/b.smck"] and files.list("spill/none") == []
    assert files.read("a.smck") == b"second" and len(files.read("spill/m/b.smck")) == 100_000
    files.delete("a.smck")
    files.delete("a.smck")  # already gone: no error
    assert files.list() == []
    with pytest.raises(FileNotFoundError):
        files.read("a.smck")


def test_plain_paths_and_file_urls_stay_local(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    assert isinstance(open_store("memory://x"), FsspecStore)


def test_a_directory_that_cannot_be_made_is_a_store_error(tmp_path: Path) -> None:
    """``run`` with a checkpoint.dir under a file (or a missing mount) stopped with
    a NotADirectoryError traceback; it is a StoreError (exit 2) naming the setting."""
    (tmp_path / "file").write_text("")
    for where in (tmp_path / "file" / "ckpt", f"file://{tmp_path}/file/ckpt"):
        with pytest.raises(StoreError, match=r"checkpoint.dir .*file/ckpt.*: cannot create"):
            CheckpointStore(where, member="a")


def test_a_crash_mid_write_leaves_no_file_under_the_name(tmp_path: Path) -> None:
    files = LocalStore(tmp_path)
    (tmp_path / "ckpt-0000000000001-a.smck.tmp").write_bytes(b"half")  # killed mid-write
    assert files.list() == []


def test_state_restores_from_object_storage_exactly(s3_endpoint: str, s3_url: str) -> None:
    original = small_engine()
    feed(original, range(20))
    saver = checkpointer(original, CheckpointStore(s3_url, "a",
                                                   options={"endpoint_url": s3_endpoint}))
    saver.advance({0: 60, 1: 60}, 120)
    written = saver.save()
    assert written.path.startswith(s3_url + "/ckpt-") and written.size > 0
    copy = small_engine()
    loader = checkpointer(copy, CheckpointStore(s3_url, "b",
                                                options={"endpoint_url": s3_endpoint}))
    assert loader.restore_model() == original.version
    assert loader.restore_partitions([0, 1]) == {0: 60, 1: 60}
    feed(original, range(20, 30))
    feed(copy, range(20, 30))
    for name, slot in original.arena.index.items():
        other = copy.arena.index[name]
        torch.testing.assert_close(copy.arena.ring[other], original.arena.ring[slot])
        torch.testing.assert_close(copy.arena.phi[other], original.arena.phi[slot])


def test_spill_files_live_in_the_object_store(s3_endpoint: str, s3_url: str) -> None:
    store = CheckpointStore(s3_url, "a", options={"endpoint_url": s3_endpoint})
    spill = SpillStore(store.files, "a")
    engine = small_engine()
    feed(engine, range(10))
    rows = engine.arena.export(engine.arena.slots_in([0]))
    spill.put(rows)
    [name] = store.files.list("spill/a")
    back = spill.take(list(rows["names"]))
    assert back["names"] == rows["names"]
    torch.testing.assert_close(back["phi"], rows["phi"])
    assert name.startswith("spill/a/spill-")


def test_an_unreachable_store_fails_after_bounded_retries() -> None:
    waits: list[float] = []
    files = FsspecStore("s3://bucket/x", {"endpoint_url": "http://127.0.0.1:9",
                                          "config_kwargs": {"retries": {"max_attempts": 1},
                                                            "connect_timeout": 1}},
                        sleep=waits.append)
    with pytest.raises(StoreError, match="failed after 4 tries"):
        files.write_atomic("a.smck", b"x")
    assert len(waits) == 3


# -- fencing -------------------------------------------------------------------------


def test_a_zombie_s_later_checkpoint_is_never_preferred(files: FileStore) -> None:
    """A owns partition 0, stalls; B is assigned 0 in a later generation and restores
    A's state; A wakes and writes 0 again: B's state wins, however the times fall."""
    a_engine, b_engine = small_engine(), small_engine()
    feed(a_engine, range(10))
    zombie = checkpointer(a_engine, CheckpointStore(files, "a", keep=5))
    zombie.restore_partitions([0, 1], generation=3)
    zombie.advance({0: 30, 1: 30}, 60)
    zombie.save()
    owner = checkpointer(b_engine, CheckpointStore(files, "b", keep=5))
    assert owner.restore_partitions([0], generation=4) == {0: 30}
    owner.advance({0: 40}, 10)
    owner.save()
    feed(a_engine, range(10, 20))
    zombie.advance({0: 60, 1: 60}, 60)
    zombie.save()  # later in time, older ownership of 0; 1 is still A's
    found = CheckpointStore(files, "c").latest_for(0)
    assert found is not None and found[1]["partitions"][0]["offset"] == 40
    assert "-b.smck" in found[0]
    found = CheckpointStore(files, "c").latest_for(1)
    assert found is not None and found[1]["partitions"][1]["offset"] == 60


def test_a_fenced_writer_does_not_publish_the_partitions_it_lost(tmp_path: Path) -> None:
    a_engine, b_engine = small_engine(), small_engine()
    feed(a_engine, range(10))
    a_store = CheckpointStore(tmp_path, "a", keep=5)
    zombie = checkpointer(a_engine, a_store)
    zombie.restore_partitions([0, 1], generation=1)
    zombie.advance({0: 30, 1: 30}, 60)
    zombie.save()
    owner = checkpointer(b_engine, CheckpointStore(tmp_path, "b", keep=5))
    owner.restore_partitions([0], generation=2)
    owner.save()
    written = zombie.save()
    assert a_store.fenced_seen == 1
    payload = a_store.newest().__next__()[1]
    assert Path(written.path).name.endswith("-a.smck") and set(payload["partitions"]) == {1}


def test_epochs_rise_even_when_the_group_generation_starts_again(tmp_path: Path) -> None:
    """A group whose generation went back to 1 (deleted, or another cluster) must
    not leave new owners behind the files of the old ones."""
    engine = small_engine()
    old = checkpointer(engine, CheckpointStore(tmp_path, "a"))
    old.restore_partitions([0], generation=50)
    old.advance({0: 10}, 10)
    old.save()
    new = checkpointer(small_engine(), CheckpointStore(tmp_path, "b"))
    new.restore_partitions([0], generation=1)
    assert new.epochs[0] == 51
    new.advance({0: 20}, 10)
    new.save()
    found = CheckpointStore(tmp_path, "c").latest_for(0)
    assert found is not None and found[1]["partitions"][0]["offset"] == 20


def test_a_file_without_a_manifest_is_still_found(tmp_path: Path) -> None:
    """An older version's file, or a crash between the data and the manifest write."""
    saver = checkpointer(small_engine(), CheckpointStore(tmp_path, "a"))
    saver.advance({0: 7}, 7)
    written = saver.save()
    Path(written.path).with_suffix(".json").unlink()
    found = CheckpointStore(tmp_path, "b").latest_for(0)
    assert found is not None and found[1]["partitions"][0]["offset"] == 7


def test_expired_offsets_continue_from_the_earliest(tmp_path: Path) -> None:
    engine = small_engine()
    feed(engine, range(10))
    saver = checkpointer(engine, CheckpointStore(tmp_path, "a"))
    saver.advance({0: 30, 1: 30}, 60)
    saver.expire(0, 100, keep_state=True)
    assert saver.positions[0] == 100 and engine.arena.slots_in([0]).numel() == 3
    saver.expire(1, 200, keep_state=False)
    assert saver.positions[1] == 200 and engine.arena.slots_in([1]).numel() == 0
