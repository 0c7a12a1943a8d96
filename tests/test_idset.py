"""`IdRegistry`: the ids of a batch sweep, moved to a temporary SQLite file past a limit."""

from mjave.inference.idset import IdRegistry


def test_in_memory_then_on_disk_with_the_same_answers(tmp_path):
    reg = IdRegistry(memory_limit=3, folder=tmp_path)
    for i, key in enumerate(["a", "b", "c"], 1):
        reg.add(key, i)
    assert not reg.on_disk and len(reg) == 3 and not list(tmp_path.iterdir())
    reg.add("a", 99)                      # a known id keeps its first row number
    assert reg.get("a") == 1 and len(reg) == 3
    reg.add("d", 4)                       # the fourth id crosses the limit
    assert reg.on_disk and len(list(tmp_path.glob("mjave-ids-*.sqlite"))) == 1
    for key, n in {"a": 1, "b": 2, "c": 3, "d": 4}.items():
        assert key in reg and reg.get(key) == n
    reg.add("d", 50)
    reg.add("e")
    assert reg.get("d") == 4 and reg.get("e") == 0 and len(reg) == 5
    assert "zz" not in reg and reg.get("zz") is None
    reg.close()
    assert not list(tmp_path.iterdir()) and len(reg) == 0 and "a" not in reg


def test_many_ids_on_disk_and_context_manager(tmp_path):
    with IdRegistry(memory_limit=100, folder=tmp_path) as reg:
        for i in range(5000):
            reg.add(f"id-{i}", i)
        assert reg.on_disk and len(reg) == 5000
        assert reg.get("id-4321") == 4321 and "id-5000" not in reg
    assert not list(tmp_path.iterdir())
