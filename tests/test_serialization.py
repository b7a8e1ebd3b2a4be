"""dl.save keeps file modes and symlinks as a plain write would; dl.load names files that are not checkpoints."""
import os
import stat

import pytest
import torch

import minidl as dl


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Run the test under a umask of 027 (not the common 022, so that a hard-coded mode shows)."""
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def state():
    return {"weight": torch.arange(6.0).reshape(2, 3), "bias": torch.ones(2)}


def assert_state_equal(got):
    want = state()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_new_file_gets_the_mode_open_would_give(tmp_path, umask):
    path = tmp_path / "net.pt"
    dl.save(state(), path)
    assert mode_of(path) == 0o666 & ~umask
    assert_state_equal(dl.load(path))


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o664])
def test_existing_file_keeps_its_mode(tmp_path, umask, mode):
    path = tmp_path / "net.pt"
    path.write_bytes(b"old")
    os.chmod(path, mode)
    dl.save(state(), path)
    assert mode_of(path) == mode
    assert_state_equal(dl.load(path))


def test_save_through_a_symlink_writes_its_target(tmp_path):
    target_dir, link_dir = tmp_path / "real", tmp_path / "links"
    target_dir.mkdir()
    link_dir.mkdir()
    target = target_dir / "net.pt"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    link = link_dir / "latest.pt"
    link.symlink_to(os.path.relpath(target, link_dir))
    dl.save(state(), link)
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(target, link_dir)
    assert_state_equal(dl.load(target))
    assert mode_of(target) == 0o640
    assert sorted(os.listdir(target_dir)) == ["net.pt"] and sorted(os.listdir(link_dir)) == ["latest.pt"]


def test_save_through_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "latest.pt"
    link.symlink_to("net.pt")
    dl.save(state(), link)
    assert link.is_symlink() and (tmp_path / "net.pt").is_file()
    assert_state_equal(dl.load(link))


def test_failed_save_through_a_symlink_leaves_nothing_behind(tmp_path, monkeypatch):
    target_dir = tmp_path / "real"
    target_dir.mkdir()
    (target_dir / "net.pt").write_bytes(b"old")
    link = tmp_path / "latest.pt"
    link.symlink_to(target_dir / "net.pt")

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        dl.save(state(), link)
    assert (target_dir / "net.pt").read_bytes() == b"old" and link.is_symlink()
    assert os.listdir(target_dir) == ["net.pt"] and sorted(os.listdir(tmp_path)) == ["latest.pt", "real"]


def test_save_to_a_folder_names_it(tmp_path):
    with pytest.raises(IsADirectoryError, match="minidl.save: .* is a folder"):
        dl.save(state(), tmp_path)


def checkpoint_bytes(tmp_path):
    path = tmp_path / "good.pt"
    dl.save(state(), path)
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["text", "random bytes", "empty", "truncated", "other zip", "truncated legacy"])
def test_load_of_a_file_that_is_not_a_checkpoint_names_it(tmp_path, kind):
    path = tmp_path / "not_a_checkpoint.pt"
    if kind == "text":
        path.write_text("weight,bias\n1,2\n")
    elif kind == "random bytes":
        path.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist()))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(checkpoint_bytes(tmp_path)[:300])
    elif kind == "other zip":
        import zipfile
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hello")
    else:
        torch.save(state(), path, _use_new_zipfile_serialization=False)
        path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"minidl.load: '.*not_a_checkpoint.pt' is not a minidl/torch checkpoint"):
        dl.load(path)


def test_load_reads_the_legacy_torch_format(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save(state(), path, _use_new_zipfile_serialization=False)
    assert_state_equal(dl.load(path))


def test_load_still_refuses_objects_beyond_weights(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"obj": ValueError("not a tensor")}, path)
    with pytest.raises(Exception, match="[Ww]eights.only"):
        dl.load(path)
