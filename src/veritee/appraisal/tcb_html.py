"""The TCB report as one self-contained HTML page (inline CSS, no scripts, no external assets).

Written for a person deciding whether to trust a deployment: the verdict and
the gaps first, then one row per layer, readable on screen and on paper.
Everything taken from the evidence or the owner's files is HTML-escaped.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable

from veritee.appraisal.tcb import LAYER_KINDS, OLD_AFTER_DAYS, Component, Finding, TcbReport

__all__ = ["render_html"]

_CSS = """
:root { --ink:#1b1f24; --muted:#57606a; --line:#d0d7de; --ok:#1a7f37; --bad:#cf222e;
        --warn:#9a6700; --info:#0969da; --bg:#ffffff; --soft:#f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 32px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; border-bottom: 2px solid var(--line);
     padding-bottom: 4px; }
.sub { color: var(--muted); margin: 0 0 18px; }
.banner { border: 2px solid var(--bad); background: #ffebe9; color: var(--bad);
          padding: 10px 14px; font-weight: 700; border-radius: 6px; margin: 12px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0 6px; }
.card { flex: 1 1 140px; border: 1px solid var(--line); border-radius: 8px;
        padding: 10px 12px; background: var(--soft); }
.card b { display: block; font-size: 24px; }
.card span { color: var(--muted); font-size: 13px; }
.card.bad b { color: var(--bad); } .card.ok b { color: var(--ok); }
.card.warn b { color: var(--warn); }
table { width: 100%; border-collapse: collapse; font-size: 14px; table-layout: fixed; }
th, td { text-align: left; vertical-align: top; padding: 8px 9px;
         border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
col.c1 { width: 19%; } col.c2 { width: 41%; } col.c3 { width: 21%; } col.c4 { width: 19%; }
th { background: var(--soft); font-size: 12px; text-transform: uppercase;
     letter-spacing: .04em; color: var(--muted); }
td.layer small { display: block; color: var(--muted); }
.pill { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px;
        font-weight: 700; white-space: normal; }
.yes, .matched { background: #dafbe1; color: var(--ok); }
.no, .mismatch { background: #ffebe9; color: var(--bad); }
.unknown, .missing, .partial { background: #fff8c5; color: var(--warn); }
.none { background: var(--soft); color: var(--muted); }
code { font: 12px/1.4 "DejaVu Sans Mono", Menlo, Consolas, monospace; word-break: break-all;
       background: var(--soft); padding: 1px 4px; border-radius: 4px; }
ul.claims { list-style: none; margin: 6px 0 0; padding: 0; }
ul.claims li { margin: 2px 0; }
.how { color: var(--muted); }
.warnline { color: var(--bad); font-weight: 600; }
.gap { border-left: 4px solid var(--warn); background: #fffbdd; padding: 8px 12px;
       margin: 8px 0; border-radius: 0 6px 6px 0; }
.gap b { display: block; }
.comp { margin: 3px 0; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; }
@media print {
  body { font-size: 11pt; } main { max-width: none; padding: 0; }
  .card, .gap, tr { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


def _e(value: object) -> str:
    return html.escape(value if isinstance(value, str) else json.dumps(value), quote=True)


def _pill(state: str, label: str | None = None) -> str:
    css = state if state in ("yes", "no", "unknown", "matched", "mismatch", "missing",
                             "partial", "none") else "none"
    return f'<span class="pill {css}">{_e(label or state)}</span>'


_REFERENCE_LABEL = {
    "matched": "matched",
    "mismatch": "MISMATCH",
    "missing": "no reference value",
    "partial": "partly checked",
    "none": "not applicable",
}


_MEASURED_LABEL = {"yes": "measured", "no": "not measured", "unknown": "coverage unknown"}


def _claims(finding: Finding) -> str:
    items = []
    for name, value in finding.claims.items():
        if isinstance(value, list):
            shown = "<br>".join(_e(v) for v in value[:8]) + (" ..." if len(value) > 8 else "")
        elif isinstance(value, dict):
            shown = _e(json.dumps(value))
        else:
            shown = _e(value)
        items.append(f"<li><code>{_e(name)}</code> {shown}</li>")
    return f'<ul class="claims">{"".join(items)}</ul>' if items else ""


def _component(c: Component, report: TcbReport) -> str:
    bits = [f"<b>{_e(c.name)}</b>" + (f" {_e(c.version)}" if c.version else "")]
    if c.open_source is not None:
        bits.append(_pill("yes" if c.open_source else "no",
                          "open source" if c.open_source else "closed source"))
    if c.audited is not None:
        label = ("audited" + (f" by {c.audited_by}" if c.audited_by else "")) if c.audited else (
            "not audited")
        bits.append(_pill("yes" if c.audited else "no", label))
    age = c.age_days(report.generated_at)
    if age is not None:
        state = "unknown" if age > OLD_AFTER_DAYS else "yes"
        bits.append(_pill(state, f"{age} days old" if age >= 0 else "release date ahead"))
    return '<div class="comp">' + " ".join(bits) + "</div>"


def _rows(report: TcbReport) -> Iterable[str]:
    for f in report.findings:
        refs = "".join(
            f"<div>{_pill(r.state, r.name)} <span class='how'>{_e(r.detail)}</span></div>"
            for r in f.references
        )
        warnings = "".join(f'<div class="warnline">&#9888; {_e(w)}</div>' for w in f.warnings)
        comps = "".join(_component(c, report) for c in f.components) or (
            '<span class="how">no component metadata</span>'
        )
        measured = _MEASURED_LABEL.get(f.measured, f.measured)
        yield (
            "<tr>"
            f'<td class="layer"><b>{_e(f.title)}</b>'
            f"<small>{_e(LAYER_KINDS.get(f.layer, f.layer))}</small></td>"
            f"<td>{_pill(f.measured, measured)}"
            f'<div class="how">{_e(f.how)}</div>{_claims(f)}{warnings}</td>'
            f"<td>{_pill(f.reference, _REFERENCE_LABEL.get(f.reference))}{refs}</td>"
            f"<td>{comps}</td>"
            "</tr>"
        )


def render_html(report: TcbReport) -> str:
    s = report.summary()
    verdict_bad = s["mismatched"] > 0 or report.simulated
    cards = [
        ("layers in the TCB", s["layers"], ""),
        ("measured by the evidence", s["measured"], "ok"),
        ("matched a reference value", s["matched"], "ok"),
        ("did NOT match", s["mismatched"], "bad" if s["mismatched"] else "ok"),
        ("measured, reference value missing", s["unchecked"], "warn" if s["unchecked"] else "ok"),
        ("not covered at all", s["not_covered"], "warn"),
    ]
    if s["components"]:
        cards += [
            ("closed-source components", s["not_open_source"],
             "warn" if s["not_open_source"] else "ok"),
            ("unaudited components", s["not_audited"], "warn" if s["not_audited"] else "ok"),
            (f"older than {OLD_AFTER_DAYS} days", s["older_than_a_year"],
             "warn" if s["older_than_a_year"] else "ok"),
        ]
    card_html = "".join(
        f'<div class="card {css}"><b>{value}</b><span>{_e(label)}</span></div>'
        for label, value, css in cards
    )
    gaps = "".join(
        f'<div class="gap"><b>{_e(g.what)}</b>{_e(g.why)}</div>' for g in report.not_covered
    )
    unplaced = ""
    if report.unplaced_components:
        unplaced = (
            "<h2>Components with no matching layer in this evidence</h2>"
            + "".join(_component(c, report) for c in report.unplaced_components)
        )
    banner = (
        '<div class="banner">SIMULATED EVIDENCE: signed by a local test root, '
        "not by a hardware vendor.</div>"
        if report.simulated
        else ""
    )
    verdict = (
        '<div class="banner">Some measured layers do NOT match the reference values.</div>'
        if s["mismatched"]
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>TCB report: {_e(report.subject)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<h1>Trusted computing base: {_e(report.subject)}</h1>
<p class="sub">What this attestation evidence covers, layer by layer &middot; generated
{_e(report.generated_at.strftime("%Y-%m-%d %H:%M UTC"))} by veritee</p>
{banner}{verdict}
<div class="cards">{card_html}</div>
<h2>Not covered by this evidence</h2>
<p class="how">Trust in these rests on something other than this attestation.</p>
{gaps}
<h2>Layers</h2>
<table>
<colgroup><col class="c1"><col class="c2"><col class="c3"><col class="c4"></colgroup>
<thead><tr><th>Layer</th><th>Measured by the evidence</th><th>Reference values</th>
<th>Component (owner's metadata)</th></tr></thead>
<tbody>
{"".join(_rows(report))}
</tbody>
</table>
{unplaced}
<footer>{"Verdict: review the mismatches above. " if verdict_bad else ""}"Measured" means the
value is inside the signed evidence; "matched" means it equals one of the owner's reference
values; component facts (open source, audits, release dates) are the owner's statements,
not verified by veritee.</footer>
</main>
</body>
</html>
"""
