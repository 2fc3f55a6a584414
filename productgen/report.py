"""Reports for people: a run's evaluation, and the nightly run's summary.

write_report      the run folder's eval.json (every metric, the gate's numbers), eval.md (the
                  same as tables) and contact sheet (real holdout photo | render of its text)
nightly_summary   markdown for the nightly flow's artifact: stages, rejects, quality
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from productgen.atomic import write_text_atomic
from productgen.attributes import LOW_CONFIDENCE, SOURCES, describe_read
from productgen.evaluate import Evaluation
from productgen.runs import RunFolder
from productgen.sheets import labelled_grid, save_png

__all__ = ["NightlyOutcome", "markdown_report", "nightly_summary", "write_report"]


def _sampled(rows: int, population: int | None) -> str:
    if population and population > rows:
        return f" (a sample stratified by category and colour, of {population:,})."
    return "."


def _interval(bounds: list[float] | None) -> str:
    return f" ({100 * bounds[0]:.1f}-{100 * bounds[1]:.1f})" if bounds else ""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _of_reference(cas: dict, attribute: str) -> str:
    reference = cas.get("reference", {}).get(attribute)
    ratio = cas.get("ratio", {}).get(attribute)
    return "" if reference is None or ratio is None else f" ({_pct(reference)} real; {ratio:.2f})"


def markdown_report(metrics: dict, contact_sheet: str | None = None) -> str:
    """eval.md: what a person reads to decide whether renders match the catalog.

    contact_sheet: a link to the contact sheet, relative to where the markdown is shown.
    """
    holdout, cas, para = metrics["holdout"], metrics["cas"], metrics["paraphrase"]
    real = metrics["judge"]["real_accuracy"]
    lines = [
        f"# Evaluation of model {metrics['model_version']}",
        "",
        f"Run `{metrics['run']}` ({metrics['family']}, conditioning: {', '.join(metrics['conditioning'])}),"
        f" snapshot `{metrics['snapshot']}`, {holdout['rows']:,} holdout descriptions rendered"
        + _sampled(holdout["rows"], metrics.get("holdout_population")),
        "",
        "## Does each render show what its description says?",
        "",
        "| attribute | judge on real photos | on renders | ratio | paraphrases | CAS |",
        "|---|---|---|---|---|---|",
    ]
    for attribute in real:
        lines.append(
            f"| {attribute} | {_pct(real[attribute])} | {_pct(holdout['accuracy'].get(attribute))}"
            f"{_interval(holdout.get('ci95', {}).get(attribute))}"
            f" | {holdout['ratio'].get(attribute, 0):.2f} | {_pct(para['accuracy'].get(attribute))}"
            f" | {_pct(cas['accuracy'].get(attribute))}{_of_reference(cas, attribute)} |"
        )
    lines += [
        "",
        "Ratio: accuracy on renders / accuracy on real photos; in brackets, the 95% interval (Wilson) of",
        "the accuracy over the rows rendered. Paraphrases: prompts in words the catalog",
        f"never used ({para['prompts']} prompts; hex colour codes alone: {_pct(para['hex_color_accuracy'])};"
        f" the text side named the right category for {_pct(para['category_read'])}). CAS: a classifier",
        f"trained on {cas['train_rows']:,} renders only, tested on real holdout photos; in brackets, the",
        "same classifier trained on those rows' real photos (CAS's ceiling) and the ratio to it.",
        "",
        "## Do renders look like the real photos? (judge feature space)",
        "",
        "| metric | renders vs real | real vs real (floor) |",
        "|---|---|---|",
        f"| FID (lower is better) | {holdout['fid']:.2f} | {holdout['fid_floor']:.2f} |",
        f"| precision | {_pct(holdout['precision'])} | {_pct(holdout['precision_floor'])} |",
        f"| recall | {_pct(holdout['recall'])} | {_pct(holdout['recall_floor'])} |",
        "",
        "## Paraphrase examples",
        "",
        "| prompt | meant | judged |",
        "|---|---|---|",
    ]
    for ex in para["examples"]:
        lines.append(
            f"| {ex['text']} | {ex['color']} {ex['category']} "
            f"| {ex.get('judged_color', '-')} {ex.get('judged_category', '-')} |"
        )
    if contact_sheet:
        lines += ["", f"![contact sheet]({contact_sheet})"]
    lines.append("")
    return "\n".join(lines)


def write_report(evaluation: Evaluation, run_dir: Path) -> dict[str, Path]:
    """Write eval.json, eval.md and the contact sheet into the run folder."""
    images, labels = [], []
    for real, render, title in evaluation.contact:
        images += [real, render]
        labels += [f"real: {title}", "render"]
    version = evaluation.metrics["model_version"]
    sheet = labelled_grid(
        images, labels, 8, title=f"real photo | render of its description (model {version})"
    )
    run = RunFolder(run_dir)
    save_png(sheet, run.contact_sheet)
    write_text_atomic(run.eval_json, json.dumps(evaluation.metrics, indent=2, default=float) + "\n")
    write_text_atomic(run.eval_md, markdown_report(evaluation.metrics, run.contact_sheet.name))
    return {"json": run.eval_json, "markdown": run.eval_md, "contact_sheet": run.contact_sheet}


@dataclass(frozen=True)
class NightlyOutcome:
    """What one nightly run did, stage by stage (None: the stage did not run)."""

    catalog: str
    dest: str
    snapshot: str
    valid: int
    rejected: int
    rejects: pd.DataFrame  # the first rejected rows: source_row, sku, field, reason
    retrain_reason: str | None  # why a model was trained; None: the promoted one was reused
    promotion: dict | None  # Promotion.to_json()
    published: dict | None  # PublishSummary.to_json()
    gate: dict[str, float] | None  # the promoted model's gate numbers
    model_version: str | None
    contact_sheet: str | None  # a link to the promoted model's contact sheet
    reads: dict | None = None  # EncodeSummary.reads: where colour and category came from


def nightly_summary(outcome: NightlyOutcome) -> str:
    """The nightly run's markdown summary: counts per stage, rejected rows, the model's quality."""
    o = outcome
    model = f"trained: {o.retrain_reason}" if o.retrain_reason else "unchanged data: promoted model reused"
    lines = [
        f"# Nightly catalog render: {o.catalog} -> {o.dest}",
        "",
        "| stage | result |",
        "|---|---|",
        f"| ingest | {o.valid:,} valid rows, {o.rejected:,} rejected (`{o.snapshot}`) |",
        f"| model | {model} |",
    ]
    if o.promotion:
        verdict = "promoted" if o.promotion["promoted"] else "REFUSED by the gate"
        reasons = "; ".join(o.promotion["reasons"])
        lines.append(f"| gate | model {o.promotion['version']} {verdict} {reasons} |")
    if o.published:
        p = o.published
        lines.append(
            f"| render | {p['published']:,} published, {p['unchanged']:,} unchanged, "
            f"{p['recovered']:,} recovered; {p['images']:,} images under model "
            f"{p['model_version']} ({p['images_per_s']:,.0f} img/s)"
            + (f"; {p['retried_writes']:,} writes retried, {p['adopted_writes']:,} of them had landed"
               if p.get("retried_writes") else "")
            + (f"; {p['low_confidence']:,} rows from low-confidence reads" if p.get("low_confidence") else "")
            + " |"
        )  # fmt: skip
        lines.append(f"| manifest | `{p['manifest']}` |")
    if o.reads:
        lines += ["", "## What was read from the rows", "", *_reads_table(o.reads)]
    if o.rejected and len(o.rejects):
        lines += ["", f"## Rejected rows (first {len(o.rejects)} of {o.rejected:,})", "", *_table(o.rejects)]
    if o.gate is not None:
        gate = pd.DataFrame({"gate metric": list(o.gate), "value": [f"{v:.3f}" for v in o.gate.values()]})
        lines += ["", f"## Quality of model {o.model_version}", "", *_table(gate), ""]
        if o.contact_sheet:
            lines.append(f"[contact sheet]({o.contact_sheet})")
    return "\n".join(lines)


def _reads_table(reads: dict) -> list[str]:
    """Rows per source for each attribute, then the least sure rows (to check, or pin in a map)."""
    counts = pd.DataFrame(
        {label: [f"{reads[attribute].get(s, 0):,}" for s in (*SOURCES, "low_confidence")]
         for attribute, label in (("category", "category"), ("color", "colour"))},
        index=[*SOURCES, "low confidence"],
    ).rename_axis("source").reset_index()  # fmt: skip
    lines = _table(counts)
    if reads.get("lowest"):
        lowest = pd.DataFrame(
            {
                "title": [r.get("title") for r in reads["lowest"]],
                "read": [describe_read(r) for r in reads["lowest"]],
            }
        )
        lines += [
            "",
            f"Least sure (below {LOW_CONFIDENCE}): check them, or pin them in attribute-map.yaml",
            "",
        ]
        lines += _table(lowest)
    return lines


def _table(frame: pd.DataFrame) -> list[str]:
    """A markdown table; pipes inside cells escaped."""
    cells = frame.astype(object).map(lambda v: "" if pd.isna(v) else str(v).replace("|", "\\|"))
    rows = [" | ".join(frame.columns), " | ".join("---" for _ in frame.columns)]
    return [f"| {row} |" for row in rows + [" | ".join(r) for r in cells.itertuples(index=False)]]
