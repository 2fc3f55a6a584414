"""Reports for people: the nightly summary says what each stage did and shows the rejected rows."""

from __future__ import annotations

import pandas as pd

from productgen.report import NightlyOutcome, nightly_summary


def _outcome(**changes) -> NightlyOutcome:
    base = dict(
        catalog="catalog.csv", dest="s3://b/p", snapshot="build/snap", valid=98, rejected=2,
        rejects=pd.DataFrame({"source_row": [3, 9], "sku": ["A|1", None], "field": ["sku", "title"],
                              "reason": ["sku 'A|1' has the character '|'", "title is empty"]}),
        retrain_reason="no promoted model yet",
        promotion={"version": "abc123def456", "promoted": True, "reasons": []},
        published={"published": 98, "unchanged": 0, "recovered": 0, "images": 98,
                   "model_version": "abc123def456", "images_per_s": 310.4,
                   "manifest": "s3://b/p/manifests/runs/r/manifest.parquet"},
        gate={"color_accuracy": 0.99, "fid": 12.5}, model_version="abc123def456",
        contact_sheet="http://127.0.0.1:9000/b/p/models/abc123def456/contact-sheet.png",
    )  # fmt: skip
    return NightlyOutcome(**{**base, **changes})


def test_summary_lists_each_stage_rejects_and_quality() -> None:
    text = nightly_summary(_outcome())
    assert "| ingest | 98 valid rows, 2 rejected (`build/snap`) |" in text
    assert "| model | trained: no promoted model yet |" in text
    assert "model abc123def456 promoted" in text
    assert "98 published, 0 unchanged, 0 recovered" in text
    assert "## Rejected rows (first 2 of 2)" in text
    assert "A\\|1" in text  # a pipe inside a cell does not break the table
    assert "| color_accuracy | 0.990 |" in text and "[contact sheet](http://" in text


def test_a_refused_model_shows_why_and_no_render() -> None:
    refused = {"version": "abc123def456", "promoted": False, "reasons": ["fid 30 is worse than 12"]}
    text = nightly_summary(_outcome(promotion=refused, published=None, gate=None, rejected=0))
    assert "REFUSED by the gate fid 30 is worse than 12" in text
    assert "| render |" not in text and "Rejected rows" not in text and "Quality of model" not in text


def test_summary_shows_where_attributes_came_from_and_the_least_sure_rows() -> None:
    reads = {
        "rows": 100,
        "category": {"map": 2, "field": 60, "title": 30, "nearest": 8, "low_confidence": 1},
        "color": {"field": 70, "title": 20, "none": 10},
        "lowest": [
            {"title": "Gift | voucher", "category": "bag", "category_source": "nearest",
             "category_confidence": 0.31, "color": None, "color_hex": None, "color_source": "none",
             "color_confidence": 0.0},
        ],
    }  # fmt: skip
    text = nightly_summary(_outcome(reads=reads))
    assert "## What was read from the rows" in text
    assert "| nearest | 8 | 0 |" in text and "| low confidence | 1 | 0 |" in text
    assert "| Gift \\| voucher | colour -, category bag (nearest, 0.31)  [low confidence" in text
    assert "What was read" not in nightly_summary(_outcome())
