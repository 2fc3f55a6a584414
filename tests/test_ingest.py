"""Ingest: real catalog files in every supported format, each kind of bad input, nothing lost."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from productgen.catalog.ingest import IngestSummary, ingest, ingest_source
from productgen.catalog.readers import MAX_LINE, CatalogFileError
from productgen.storage import S3Settings, s3_client

HEADER = "sku,title,brand,color,size,category,updated_at\n"


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _ingest(
    tmp_path: Path, name: str, content: str | bytes
) -> tuple[IngestSummary, pd.DataFrame, pd.DataFrame]:
    summary = ingest(_write(tmp_path, name, content), tmp_path / "snap")
    valid = pd.read_parquet(tmp_path / "snap" / "valid.parquet")
    rejects = pd.read_parquet(tmp_path / "snap" / "rejects.parquet")
    assert summary.valid + summary.rejected == summary.rows
    assert len(valid) == summary.valid and len(rejects) == summary.rejected
    return summary, valid, rejects


def _reason(rejects: pd.DataFrame, line: int) -> tuple[str, str]:
    row = rejects[rejects["source_row"] == line].iloc[0]
    return row["field"], row["reason"]


# -- whole-file problems: one clear line naming the file -----------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", b"", "the file is empty"),
        ("header.csv", HEADER, "no records after the header"),
        ("blank.csv", "\n\n", "no header line"),
        ("nosku.csv", "title,color\nboots,red\n", "required column 'sku' is missing"),
        ("notitle.jsonl", '{"sku": "A"}\n', "required column 'title' is missing"),
        ("fake.parquet", HEADER + "A,t,,,,,\n", "not a readable Parquet file"),
        ("fake.csv.gz", HEADER + "A,t,,,,,\n", "not a gzip file"),
        ("catalog.xlsx", "whatever", "unknown catalog format"),
        ("dupe.csv", "sku,title,SKU\nA,t,B\n", "column 'sku' appears twice"),
    ],
)
def test_whole_file_problems_name_the_file(
    tmp_path: Path, name: str, content: str | bytes, expected: str
) -> None:
    """Unusable files raise one line that names the file and the problem."""
    path = _write(tmp_path, name, content)
    with pytest.raises(CatalogFileError) as info:
        ingest(path, tmp_path / "snap")
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_no_valid_row_is_an_error_but_rejects_are_kept(tmp_path: Path) -> None:
    """When every row is bad the run fails, and rejects.csv still says why for each row."""
    path = _write(tmp_path, "bad.csv", HEADER + "a b,t,,,,,\n,t,,,,,\n")
    with pytest.raises(CatalogFileError, match="no valid row; all 2 rejected"):
        ingest(path, tmp_path / "snap")
    assert len(pd.read_csv(tmp_path / "snap" / "rejects.csv")) == 2
    assert json.loads((tmp_path / "snap" / "summary.json").read_text())["rejected"] == 2


# -- row rules -----------------------------------------------------------------------------------


def test_sku_is_text_exactly_as_written(tmp_path: Path) -> None:
    """Leading zeros stay; only A-Z a-z 0-9 . _ - pass; paths, spaces, '.', '..' and long skus fail."""
    rows = [
        "00123,boot,,,,,",  # line 2: valid, stays 00123
        "../etc,boot,,,,,",  # 3
        "a/b,boot,,,,,",  # 4
        "with space,boot,,,,,",  # 5
        "..,boot,,,,,",  # 6
        f"{'x' * 129},boot,,,,,",  # 7
        ",boot,,,,,",  # 8
        "A-1_b.2,boot,,,,,",  # 9: valid
    ]
    summary, valid, rejects = _ingest(tmp_path, "c.csv", HEADER + "\n".join(rows) + "\n")
    assert valid["sku"].tolist() == ["00123", "A-1_b.2"]
    assert _reason(rejects, 3) == ("sku", "sku '../etc' has the character '/'; use only A-Z a-z 0-9 . _ -")
    assert "'/'" in _reason(rejects, 4)[1]
    assert "has a space" in _reason(rejects, 5)[1]
    assert "not allowed" in _reason(rejects, 6)[1]
    assert "129 characters; at most 128" in _reason(rejects, 7)[1]
    assert "sku is empty" in _reason(rejects, 8)[1]
    assert summary.reasons == {"sku": 6}


def test_titles_are_normalised_and_checked(tmp_path: Path) -> None:
    """Control characters go, white space folds, formulas stay as written; empty and long fail."""
    long_title = "boot " * 201
    content = (
        HEADER
        + 'A,"  Red\tankle\x07 boot\r\n in  suede ",,,,,\n'  # 2-3: quoted newline, tab, bell
        + 'B,=HYPERLINK("http://x"),,,,,\n'  # 4: formula-looking
        + "C,   ,,,,,\n"  # 5: empty after normalisation
        + f"D,{long_title},,,,,\n"  # 6
        + "E,caf\u00e9 \u200bboots\u3000now,,,,,\n"  # 7: zero-width space and ideographic space
    )
    _, valid, rejects = _ingest(tmp_path, "c.csv", content)
    titles = dict(zip(valid["sku"], valid["title"], strict=True))
    assert titles["A"] == "Red ankle boot in suede"
    assert titles["B"] == '=HYPERLINK("http://x")'
    assert titles["E"] == "café boots now"
    assert _reason(rejects, 5) == ("title", "title is empty after normalisation; every row needs a title")
    assert _reason(rejects, 6) == ("title", "title is 1,004 characters; at most 1,000")
    assert valid.set_index("sku").loc["A", "source_row"] == 2


def test_formula_looking_cells_are_escaped_in_rejects_csv(tmp_path: Path) -> None:
    """A spreadsheet opening rejects.csv runs no formula; rejects.parquet keeps the raw value."""
    _, _, rejects = _ingest(tmp_path, "c.csv", HEADER + "=1+1,title,,,,,\nok,t,,,,,\n")
    csv_text = (tmp_path / "snap" / "rejects.csv").read_text()
    assert "'=1+1" in csv_text
    assert rejects.iloc[0]["sku"] == "=1+1"


def test_empty_fields_become_null_and_extra_columns_pass_through(tmp_path: Path) -> None:
    """Empty optional fields are null; unknown columns are kept, header names match any case."""
    content = "SKU,Title,Colour Code,COLOR,notes\nA,boot,#7b1f3a,,keep me\nB,bag,,red,\n"
    summary, valid, _ = _ingest(tmp_path, "c.csv", content)
    assert summary.extra_columns == ["Colour Code", "notes"]
    assert valid["color"].isna().tolist() == [True, False] and valid["color"][1] == "red"
    assert valid["brand"].isna().all()
    assert valid["Colour Code"].tolist() == ["#7b1f3a", ""]
    assert valid["notes"].tolist() == ["keep me", ""]


def test_nfc_variants_hash_equal(tmp_path: Path) -> None:
    """The same words in composed and decomposed Unicode give one content hash."""
    composed = unicodedata.normalize("NFC", "Crème brûlée coat")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    _, valid, _ = _ingest(
        tmp_path, "c.csv", HEADER + f"A,{composed},,,,,\nB,{decomposed},,,,,\nC,other,,,,,\n"
    )
    hashes = valid["content_hash"].tolist()
    assert hashes[0] == hashes[1] != hashes[2]
    assert valid["title"].tolist()[1] == composed


def test_content_hash_follows_the_description_fields(tmp_path: Path) -> None:
    """Changing colour changes the hash; changing an extra column does not."""
    content = "sku,title,color,note\nA,boot,red,x\nB,boot,red,y\nC,boot,blue,x\n"
    _, valid, _ = _ingest(tmp_path, "c.csv", content)
    a, b, c = valid["content_hash"]
    assert a == b != c


def test_duplicates_latest_updated_at_wins_then_file_order(tmp_path: Path) -> None:
    """Among repeated skus the latest updated_at wins; on a tie the later row wins; others rejected."""
    content = (
        HEADER
        + "A,old,,,,,2026-01-01T00:00:00Z\n"  # 2
        + "A,new,,,,,2026-03-01T00:00:00+01:00\n"  # 3: wins on time
        + "A,middle,,,,,2026-02-01\n"  # 4
        + "B,first,,,,,\n"  # 5
        + "B,second,,,,,\n"  # 6: wins on file order
    )
    summary, valid, rejects = _ingest(tmp_path, "c.csv", content)
    assert dict(zip(valid["sku"], valid["title"], strict=True)) == {"A": "new", "B": "second"}
    assert summary.duplicates == 3 and summary.reasons == {"duplicate": 3}
    assert _reason(rejects, 2) == ("duplicate", "duplicate sku 'A': row 3 has a later updated_at")
    assert (
        _reason(rejects, 5)[1]
        == "duplicate sku 'B': row 6 has the same updated_at and comes later in the file"
    )
    assert str(valid.set_index("sku").loc["A", "updated_at"]) == "2026-02-28 23:00:00+00:00"


def test_bad_timestamp_is_rejected(tmp_path: Path) -> None:
    """updated_at must be ISO 8601 when present."""
    _, _, rejects = _ingest(tmp_path, "c.csv", HEADER + "A,t,,,,,yesterday\nB,t,,,,,\n")
    assert _reason(rejects, 2) == ("updated_at", "updated_at 'yesterday' is not an ISO 8601 timestamp")


def test_image_paths_stay_inside_the_catalog(tmp_path: Path) -> None:
    """image must be relative and may not climb out of the catalog's folder."""
    content = "sku,title,image\nA,t,images/a.png\nB,t,../secret.png\nC,t,/etc/passwd\nD,t,a/../../b.png\n"
    summary, valid, rejects = _ingest(tmp_path, "c.csv", content)
    assert valid["sku"].tolist() == ["A"]
    assert set(rejects["field"]) == {"image"}
    assert summary.image_root == str(tmp_path.resolve())


# -- encodings and parsing -----------------------------------------------------------------------


def test_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    """A UTF-8 BOM before the header does not become part of the first column's name."""
    summary, valid, _ = _ingest(tmp_path, "c.csv", b"\xef\xbb\xbf" + HEADER.encode() + b"A,boot,,,,,\n")
    assert valid["sku"].tolist() == ["A"] and summary.extra_columns == []


def test_non_utf8_bytes_reject_the_row_and_keep_the_rest(tmp_path: Path) -> None:
    """A Latin-1 byte rejects its row with the byte named; the other rows go on."""
    content = HEADER.encode() + b"A,caf\xe9 boots,,,,,\nB,fine,,,,,\n"
    _, valid, rejects = _ingest(tmp_path, "c.csv", content)
    assert valid["sku"].tolist() == ["B"]
    field, reason = _reason(rejects, 2)
    assert field == "parse" and "not UTF-8 (0xe9)" in reason


def test_unterminated_quote_rejects_one_record_and_parsing_goes_on(tmp_path: Path) -> None:
    """A quote that never closes costs its own line only; the lines after it parse normally."""
    content = HEADER + 'A,"broken title,,,,,\nB,fine,,,,,\nC,"quoted, with comma",,,,,\n'
    _, valid, rejects = _ingest(tmp_path, "c.csv", content)
    assert valid["sku"].tolist() == ["B", "C"]
    assert valid["title"].tolist() == ["fine", "quoted, with comma"]
    field, reason = _reason(rejects, 2)
    assert field == "parse" and "unterminated quote" in reason
    assert rejects.iloc[0]["record"].startswith('A,"broken title')


def test_wrong_field_count_is_a_parse_reject(tmp_path: Path) -> None:
    """A row with too many or too few fields is rejected with both counts."""
    _, _, rejects = _ingest(tmp_path, "c.csv", "sku,title\nA,t,extra\nB\nC,ok\n")
    assert _reason(rejects, 2) == ("parse", "cannot parse the record: expected 2 fields, found 3")
    assert _reason(rejects, 3) == ("parse", "cannot parse the record: expected 2 fields, found 1")


def test_semicolon_csv_is_read(tmp_path: Path) -> None:
    """European exports separated by semicolons read the same."""
    _, valid, _ = _ingest(tmp_path, "c.csv", "sku;title;color\nA;Boot, leather;red\n")
    assert valid["title"].tolist() == ["Boot, leather"]


def test_gzip_csv(tmp_path: Path) -> None:
    """.csv.gz is read as compressed CSV, line numbers as in the plain file."""
    _, valid, rejects = _ingest(
        tmp_path, "c.csv.gz", gzip.compress((HEADER + "A,t,,,,,\nb b,t,,,,,\n").encode())
    )
    assert valid["sku"].tolist() == ["A"] and rejects["source_row"].tolist() == [3]


def test_jsonl_with_a_broken_line(tmp_path: Path) -> None:
    """A broken JSON line is rejected by number; numbers become text; nested extras keep their JSON."""
    content = (
        '{"sku": "A", "title": "boot", "tags": ["x", "y"]}\n'
        '{"sku": "B", "title": "bag"\n'
        "\n"
        '{"sku": 123, "title": "coat", "color": "navy"}\n'
        '["not", "an", "object"]\n'
    )
    summary, valid, rejects = _ingest(tmp_path, "c.jsonl", content)
    assert valid["sku"].tolist() == ["A", "123"]
    assert valid["tags"][0] == '["x", "y"]' and pd.isna(valid["tags"][1])
    assert _reason(rejects, 2)[1].startswith("cannot parse the record: broken JSON")
    assert _reason(rejects, 5)[1] == "cannot parse the record: a JSON line must be an object"
    assert summary.rows == 4


def test_a_line_longer_than_the_limit_rejects_its_record_not_the_file(tmp_path: Path) -> None:
    """A gzip that expands into one endless line (a catalog bomb) costs one reject, bounded memory."""
    huge = "B-1," + "x" * (3 * MAX_LINE) + ",Acme,red,M,coat,\n"
    content = HEADER + "A-1,Red coat,Acme,red,M,coat,\n" + huge + "C-1,Blue tee,Acme,blue,M,t-shirt,\n"
    _, valid, rejects = _ingest(tmp_path, "bomb.csv.gz", gzip.compress(content.encode()))
    assert list(valid["sku"]) == ["A-1", "C-1"]
    assert _reason(rejects, 3) == (
        "parse",
        f"cannot parse the record: line 3 is longer than {MAX_LINE:,} characters",
    )
    assert len(rejects["record"][0]) <= 2_000 and not list((tmp_path / "snap").glob(".ingest-*"))


def test_an_over_long_header_is_one_named_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "wide.csv", "sku,title," + "c" * (2 * MAX_LINE) + "\nA-1,Coat,x\n")
    with pytest.raises(CatalogFileError, match="the header line is longer than"):
        ingest(path, tmp_path / "snap")


def test_jsonl_nested_deeper_than_the_parser_rejects_that_row(tmp_path: Path) -> None:
    deep = '{"sku": "B-1", "title": ' + "[" * 200_000 + "]" * 200_000 + "}\n"
    content = '{"sku": "A-1", "title": "Red coat"}\n' + deep + '{"sku": "C-1", "title": "Blue tee"}\n'
    _, valid, rejects = _ingest(tmp_path, "deep.jsonl", content)
    assert list(valid["sku"]) == ["A-1", "C-1"]
    assert _reason(rejects, 2) == (
        "parse",
        "cannot parse the record: JSON nested deeper than the parser goes",
    )


def test_parquet_with_integer_skus_and_typed_timestamps(tmp_path: Path) -> None:
    """Integer skus become their digits; timestamp columns are used as they are."""
    table = pa.table(
        {
            "SKU": pa.array([7, 42, 42], pa.int64()),
            "Title": ["boot", "bag v1", "bag v2"],
            "updated_at": pa.array([1_700_000_000, 1_700_000_000, 1_600_000_000], pa.timestamp("s")),
            "stock": pa.array([3, 4, 5], pa.int32()),
        }
    )
    pq.write_table(table, tmp_path / "c.parquet")
    summary = ingest(tmp_path / "c.parquet", tmp_path / "snap")
    valid = pd.read_parquet(tmp_path / "snap" / "valid.parquet")
    assert valid["sku"].tolist() == ["7", "42"]
    assert valid["title"].tolist() == ["boot", "bag v1"]  # the later timestamp wins, not file order
    assert valid["stock"].tolist() == [3, 4]
    assert summary.duplicates == 1 and summary.format == "parquet"


def test_streaming_batches_keep_rows_and_duplicates_across_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With tiny batches, duplicates that sit in different batches are still found."""
    monkeypatch.setattr("productgen.catalog.readers.BATCH_ROWS", 7)
    rows = [f"S{i % 40},title {i},,,,,2026-01-{1 + i % 28:02d}" for i in range(100)]
    summary, valid, _ = _ingest(tmp_path, "c.csv", HEADER + "\n".join(rows) + "\n")
    assert summary.rows == 100 and summary.valid == 40 and summary.duplicates == 60
    assert valid["sku"].is_unique


def test_s3_source_on_the_local_server(tmp_path: Path, s3_env: S3Settings) -> None:
    """An s3:// catalog is fetched over HTTP from the S3-compatible server and ingested."""
    client = s3_client(s3_env)
    client.create_bucket(Bucket="catalogs")
    client.put_object(Bucket="catalogs", Key="nightly/catalog.csv", Body=(HEADER + "A,boot,,,,,\n").encode())
    summary = ingest_source("s3://catalogs/nightly/catalog.csv", tmp_path / "snap", s3=s3_env)
    assert summary.valid == 1 and summary.source == "s3://catalogs/nightly/catalog.csv"
    assert summary.image_root == "s3://catalogs/nightly/"
    from productgen.storage import StorageError

    with pytest.raises(StorageError, match="no such object"):
        ingest_source("s3://catalogs/missing.csv", tmp_path / "snap2", s3=s3_env)


def test_an_attribute_map_beside_an_s3_catalog_is_used_and_fingerprinted(
    tmp_path: Path, s3_env: S3Settings
) -> None:
    from productgen.catalog.ingest import source_fingerprint
    from productgen.snapshot import Snapshot

    client = s3_client(s3_env)
    client.create_bucket(Bucket="pinned")
    client.put_object(Bucket="pinned", Key="n/catalog.csv", Body=(HEADER + "A,boot,,Stone,,,\n").encode())
    before = source_fingerprint("s3://pinned/n/catalog.csv", s3=s3_env)
    client.put_object(Bucket="pinned", Key="n/attribute-map.yaml", Body=b"color_map:\n  Stone: grey\n")
    summary = ingest_source("s3://pinned/n/catalog.csv", tmp_path / "snap", s3=s3_env)
    assert summary.attribute_map == "s3://pinned/n/attribute-map.yaml" and summary.pinned["color"] == 1
    assert Snapshot(tmp_path / "snap").attribute_map()["color_map"] == {"stone": "grey"}
    assert source_fingerprint("s3://pinned/n/catalog.csv", s3=s3_env) != before  # a new map, a new snapshot
    client.put_object(Bucket="pinned", Key="n/attribute-map.yaml", Body=b"color_map:\n  Stone: [grey]\n")
    with pytest.raises(CatalogFileError, match=r"s3://pinned/n/attribute-map.yaml: color_map\['Stone'\]"):
        ingest_source("s3://pinned/n/catalog.csv", tmp_path / "snap2", s3=s3_env)


# -- the CLI -------------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "productgen", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_cli_json_summary_is_the_last_line(tmp_path: Path) -> None:
    """--json prints the summary as the last stdout line; V + R equals the records."""
    path = _write(tmp_path, "c.csv", HEADER + "A,t,,,,,\nA,t2,,,,,\nb b,t,,,,,\n")
    result = _cli("ingest", str(path), "--out", str(tmp_path / "snap"), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["rows"], summary["valid"], summary["rejected"]) == (3, 1, 2)


def test_cli_unreadable_input_is_one_line_without_traceback(tmp_path: Path) -> None:
    """A missing file and a garbage file both exit 2 with one line naming the file."""
    for path in (tmp_path / "missing.csv", _write(tmp_path, "x.parquet", b"garbage")):
        result = _cli("ingest", str(path), "--out", str(tmp_path / "snap"))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]
