"""Hot reload sees an edit only once the file has settled (collector/settled_file.py): an in-place save empties
portfolio.yml before writing it, and a poll in between must not reload an empty configuration (it has no
exchange: every stream would be stopped, then started again with its health counters reset)."""

from collector.settled_file import SettledFile

FULL = "exchanges:\n  bitstamp:\n    pairs: [BTC-USD]\n"
EDITED = "exchanges:\n  bitstamp:\n    pairs: [BTC-USD, ETH-USD]\n"


def test_an_in_place_save_caught_half_way_is_taken_once_written(tmp_path):
    path = tmp_path / "portfolio.yml"
    path.write_text(FULL)
    watched = SettledFile(path)
    assert not watched.changed()  # as it was when the collector started
    path.write_text("")  # the save has emptied it: a poll lands here
    assert not watched.changed()
    path.write_text(EDITED)  # ...and it is written
    assert not watched.changed()  # read once: it may still be being written
    assert watched.changed()  # read the same again: taken
    assert not watched.changed()  # and only once


def test_a_file_left_empty_is_an_edit_too(tmp_path):
    path = tmp_path / "portfolio.yml"
    path.write_text(FULL)
    watched = SettledFile(path)
    path.write_text("")
    assert [watched.changed() for _ in range(3)] == [False, True, False]


def test_a_missing_file_and_its_return_are_edits(tmp_path):
    path = tmp_path / "portfolio.yml"
    path.write_text(FULL)
    watched = SettledFile(path)
    path.unlink()
    assert [watched.changed() for _ in range(2)] == [False, True]
    path.write_text(FULL)
    assert [watched.changed() for _ in range(2)] == [False, True]
