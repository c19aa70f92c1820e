"""README's spec reference table is generated from the pydantic model: it cannot drift."""

from __future__ import annotations

import pytest

from watchkeeper import paths, spec_reference
from watchkeeper.spec import ModelSpec

README = paths.project_root() / "README.md"


def test_the_readme_table_is_the_generated_one():
    text = README.read_text(encoding="utf-8")
    start, end = text.index(spec_reference.START), text.index(spec_reference.END)
    in_readme = text[start:end + len(spec_reference.END)]
    assert in_readme == spec_reference.readme_block(), (
        "README's spec reference differs from the model: run "
        "`.venv/bin/python -m watchkeeper.spec_reference --write`")


def test_every_field_is_in_the_table_with_a_meaning():
    rows = {path: (tp, default, meaning) for path, tp, default, meaning in spec_reference.rows()}
    top = {n for n, f in ModelSpec.model_fields.items() if not f.exclude}
    assert top <= set(rows)
    assert not [p for p, (_, _, m) in rows.items() if not m.strip()], "fields without a meaning"
    assert rows["start_date"][1] == "unset" and "1970-01-01" in rows["start_date"][2]
    assert "`none`" in rows["landing.kind"][0] and "`none`:" in rows["landing.kind"][2]
    label = rows["prediction.label"][2]
    assert "binary_classification" in label and "regression" in label and "ranking" in label
    assert rows["drift.min_segment_rows"][1] == "`500`"
    assert rows["source.table"][2].startswith("(sql_table)")


def test_a_field_without_a_meaning_is_caught(monkeypatch):
    monkeypatch.delitem(spec_reference.MEANINGS, "owner")
    assert [p for p, _, _, m in spec_reference.rows() if not m] == ["owner"]


def test_replace_in_needs_the_markers():
    with pytest.raises(ValueError, match="markers"):
        spec_reference.replace_in("# README without the table\n")
    text = f"a\n{spec_reference.START}\nold\n{spec_reference.END}\nb\n"
    assert spec_reference.replace_in(text) == f"a\n{spec_reference.readme_block()}\nb\n"
