"""First use of the TSM master key from many threads at once: one key, never an empty file."""

import threading

from tsm.keys import FileMasterKey


def test_concurrent_first_use_sees_one_complete_key(tmp_path):
    path = tmp_path / "tsm" / "master.key"
    keys, errors = [], []
    start = threading.Barrier(16)

    def first_use():
        start.wait()
        try:
            keys.append(FileMasterKey(path).path.read_text())
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(keys)) == 1 and len(keys[0].strip()) == 32
    assert oct(path.stat().st_mode)[-3:] == "600"
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]
