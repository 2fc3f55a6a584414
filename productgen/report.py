"""The evaluation report a run carries: eval.json (numbers), eval.md (for people), contact sheet.

RUN/eval.json           every metric, the gate's numbers, paraphrase examples
RUN/eval.md             the same as tables, with the contact sheet linked
RUN/contact-sheet.png   real holdout photo beside the render of the same description
"""

from __future__ import annotations

import json
from pathlib import Path

from productgen.catalog.tables import atomic_path
from productgen.evaluate import Evaluation
from productgen.sheets import labelled_grid, save_png

__all__ = ["CONTACT_SHEET", "EVAL_JSON", "EVAL_MD", "markdown_report", "write_report"]

EVAL_JSON, EVAL_MD, CONTACT_SHEET = "eval.json", "eval.md", "contact-sheet.png"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def markdown_report(metrics: dict) -> str:
    """eval.md: what a person reads to decide whether renders match the catalog."""
    holdout, cas, para = metrics["holdout"], metrics["cas"], metrics["paraphrase"]
    real = metrics["judge"]["real_accuracy"]
    lines = [
        f"# Evaluation of model {metrics['model_version']}",
        "",
        f"Run `{metrics['run']}` ({metrics['family']}, conditioning: {', '.join(metrics['conditioning'])}),"
        f" snapshot `{metrics['snapshot']}`, {holdout['rows']:,} holdout descriptions rendered.",
        "",
        "## Does each render show what its description says?",
        "",
        "| attribute | judge on real photos | on renders | ratio | paraphrases | CAS |",
        "|---|---|---|---|---|---|",
    ]
    for attribute in real:
        lines.append(
            f"| {attribute} | {_pct(real[attribute])} | {_pct(holdout['accuracy'].get(attribute))}"
            f" | {holdout['ratio'].get(attribute, 0):.2f} | {_pct(para['accuracy'].get(attribute))}"
            f" | {_pct(cas['accuracy'].get(attribute))} |"
        )
    lines += [
        "",
        "Ratio: accuracy on renders / accuracy on real photos. Paraphrases: prompts in words the catalog",
        f"never used ({para['prompts']} prompts; hex colour codes alone: {_pct(para['hex_color_accuracy'])};"
        f" the text side named the right category for {_pct(para['category_read'])}). CAS: a classifier",
        f"trained on {cas['train_rows']:,} renders only, tested on real holdout photos.",
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
    lines += ["", f"![contact sheet]({CONTACT_SHEET})", ""]
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
    paths = {
        "json": run_dir / EVAL_JSON,
        "markdown": run_dir / EVAL_MD,
        "contact_sheet": run_dir / CONTACT_SHEET,
    }
    save_png(sheet, paths["contact_sheet"])
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(evaluation.metrics, indent=2, default=float) + "\n")
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(markdown_report(evaluation.metrics))
    return paths
