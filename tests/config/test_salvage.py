"""What ``check`` still reads of a config file that does not parse as a whole."""

from __future__ import annotations

from pathlib import Path

from config.salvage import salvage_document


def test_a_broken_list_section_is_left_out_not_a_crash(tmp_path: Path) -> None:
    # Found by the config fuzzer: a section whose body is a list (no key line to cut at) with a
    # duplicate key in it crashed check instead of being reported.
    path = tmp_path / "tocsin.yaml"
    path.write_text("rules:\n- name: a\n  name: b\npeople:\n  alice: {name: Alice}\n")
    salvaged = salvage_document(path)
    assert salvaged is not None
    assert salvaged.doc.data == {"people": {"alice": {"name": "Alice"}}}
    assert not salvaged.readable("rules")
    assert salvaged.readable("people")


def test_only_a_broken_list_section_salvages_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tocsin.yaml"
    path.write_text("rules:\n- name: a\n  name: b\n")
    assert salvage_document(path) is None
