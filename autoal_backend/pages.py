"""The HTML pages: the projects list (``/`` for a browser) and one page per project
(``/projects/<id>``). Plain HTML with server-side SVG charts (``charts.py``): no build step, no
JavaScript library, no CDN. The page reloads itself while a round runs."""

from __future__ import annotations

from html import escape

from autoal_backend.charts import Series, line_chart, stacked_area

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:16px 20px}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:26px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e5e5e5;vertical-align:top}
th{background:#f0f0f0;font-weight:600}
.card{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:12px 14px;margin:10px 0}
.chart{width:100%;max-width:900px;height:auto}
.headline{font-size:18px;font-weight:600;margin:14px 0}
.status{font-weight:600}.warn{color:#a15c00}.error{color:#b00020}.muted{color:#666}
.bar{display:inline-block;height:9px;margin-right:1px;vertical-align:middle}
img.thumb{width:64px;height:64px;object-fit:contain;background:#eee}
a{color:#0b57d0}
"""


def _page(title: str, body: str, refresh: bool = False) -> str:
    meta = '<meta http-equiv="refresh" content="5">' if refresh else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta name="viewport" content="width=device-width,initial-scale=1">{meta}'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def projects_page(rows: list[dict]) -> str:
    """The list of projects this backend tracks."""
    lines = [
        "<h1>AutoAL backend</h1>",
        '<p class="muted">Projects this backend ranks. JSON: <a href="/api/projects">/api/projects</a>, '
        'routes: <a href="/openapi.json">/openapi.json</a>.</p>',
    ]
    if not rows:
        lines.append('<div class="card">No project yet: connect this backend to a Label Studio project '
                     "(project &gt; Settings &gt; Model).</div>")  # fmt: skip
        return _page("AutoAL backend", "".join(lines))
    lines.append("<table><tr><th>project</th><th>labeled</th><th>unlabeled</th><th>rounds</th>"
                 "<th>last round</th><th>strategy</th><th>accuracy on unlabeled</th>"
                 "<th>status</th></tr>")  # fmt: skip
    for row in rows:
        status = row["status"]
        lines.append(
            f'<tr><td><a href="/projects/{row["project"]}">project {row["project"]}</a><br>'
            f'<span class="muted">{escape(", ".join(row["labels"][:8]))}</span></td>'
            f"<td>{row['labeled']}</td><td>{row['unlabeled'] if row['unlabeled'] is not None else ''}</td>"
            f"<td>{row['rounds']}</td><td>{escape(row['last_round'] or 'none yet')}</td>"
            f"<td>{escape(row['strategy'] or '')}</td>{_accuracy_cell(row['accuracy'])}"
            f'<td class="status">{escape(status["text"])}</td></tr>'
        )
    lines.append("</table>")
    busy = any(r["status"]["state"] not in ("idle",) for r in rows)
    return _page("AutoAL backend", "".join(lines), refresh=busy)


def _accuracy_cell(accuracy: dict) -> str:
    """The projects list's accuracy: the figure and its band, or "not yet" with the reason."""
    if accuracy.get("value") is None:
        return f'<td class="muted" title="{escape(accuracy["reason"] or "")}">not yet</td>'
    return (f'<td>{accuracy["value"]:.0%} <span class="muted">({accuracy["low"]:.0%}-'
            f'{accuracy["high"]:.0%})</span></td>')  # fmt: skip


def _curve_chart(curve: dict) -> str:
    series = [
        Series(
            "on unlabeled tasks",
            [(p["labeled"], p["value"]) for p in curve["unlabeled"]],
            [(p["labeled"], p["low"], p["high"]) for p in curve["unlabeled"]],
        ),
        Series(
            "cross-validated",
            [(p["labeled"], p["value"]) for p in curve["cross_validated"]],
            dashed=True,
        ),
    ]
    return line_chart(series, "labeled tasks", "accuracy", "learning curve", (0.0, 1.0), "{:.0%}")


def _labels_chart(data: dict, labels: list[str]) -> str:
    series = [
        Series(label, [(r["labeled"], float(r["counts"].get(label, 0))) for r in data["rounds"]])
        for label in labels[:12]
    ]
    return line_chart(series, "labeled tasks", "labels per class", "labels per class over rounds")


def _weights_chart(data: dict) -> str:
    rounds = [r for r in data["rounds"] if r["weights"]]
    names = sorted(
        {n for r in rounds for n in r["weights"]},
        key=lambda n: -sum(r["weights"].get(n, 0) for r in rounds),
    )
    layers = {n: [float(r["weights"].get(n, 0.0)) for r in rounds] for n in names}
    return stacked_area([float(r["labeled"]) for r in rounds], layers, "labeled tasks", "share of the priority",
                        "strategy weights over rounds")  # fmt: skip


def _contribution_bar(contributions: dict[str, float]) -> str:
    from autoal_backend.charts import PALETTE

    total = sum(contributions.values()) or 1.0
    parts = []
    for i, (name, value) in enumerate(sorted(contributions.items(), key=lambda kv: -kv[1])):
        if value <= 0:
            continue
        width = max(1, round(120 * value / total))
        parts.append(f'<span class="bar" style="width:{width}px;background:{PALETTE[i % len(PALETTE)]}" '
                     f'title="{escape(name)}: {value / total:.0%}"></span>')  # fmt: skip
    return "".join(parts)


def project_page(overview: dict) -> str:
    """The page of one project: status, learning curve, labels, weights, why the top tasks are
    first, timings, disagreements."""
    row = overview["project"]
    status = row["status"]
    pid = row["project"]
    out = [
        f"<h1>Project {pid}</h1>",
        f'<p class="muted"><a href="/">all projects</a> · model {escape(row["model_version"] or "")} · '
        f"strategy {escape(row['strategy'] or '')} · {row['labeled']} labeled, "
        f"{row['unlabeled'] if row['unlabeled'] is not None else '?'} to go · "
        f'JSON: <a href="/api/projects/{pid}">/api/projects/{pid}</a></p>',
        f'<div class="card"><span class="status" id="status" data-state="{escape(status["state"])}">'
        f"{escape(status['text'])}</span>",
    ]
    if status.get("state") == "embedding" and status.get("to_embed"):
        share = status["embedded"] / status["to_embed"]
        out.append(f' <progress id="embedding" max="1" value="{share:.3f}"></progress>')
    if status.get("last_error"):
        error = status["last_error"]
        retry = " (retried automatically)" if error.get("retrying") else ""
        out.append(f'<p class="error" id="last-error">Last failed round ({escape(error["when"])}){retry}: '
                   f'{escape(error["message"])}</p>')  # fmt: skip
    out.append("</div>")
    accuracy = row["accuracy"]
    shown = "shown" if accuracy.get("value") is not None else "withheld"
    out.append(
        f'<p class="headline" id="accuracy" data-state="{shown}">{escape(accuracy["text"])}</p>'
    )

    curve = overview["learning_curve"]
    out += [
        "<h2>Is the model getting better?</h2>",
        f'<div class="card" id="curve">{_curve_chart(curve)}<p class="muted">{escape(curve["explanation"])}</p></div>',
    ]
    labels = overview["labels_over_rounds"]
    out.append("<h2>Labels per class</h2>")
    out.append(f'<div class="card" id="labels">{_labels_chart(labels, overview["labels"])}')
    for warning in labels["warnings"]:
        out.append(f'<p class="warn">⚠ {escape(warning)}</p>')
    out.append("</div>")
    out += [
        "<h2>What the search chose</h2>",
        f'<div class="card" id="weights">{_weights_chart(overview["weights_over_rounds"])}'
        "<p class=\"muted\">Each strategy's share of the tasks' priority, per round (AutoAL: the action its "
        "prior chose for the round's state; the uniform mixture gives every strategy the same).</p></div>",
    ]
    out.append("<h2>Why these tasks are first</h2>")
    top = overview["top"]
    if not top:
        out.append('<div class="card">No queue yet.</div>')
    else:
        out.append('<table id="top"><tr><th>#</th><th>task</th><th>model\'s guess</th><th>main reason</th>'
                   "<th>contributing strategies</th></tr>")  # fmt: skip
        for task in top:
            content = ""
            if task.get("text"):
                content = f'<br><span class="muted">{escape(task["text"][:160])}</span>'
            elif task.get("thumbnail"):
                content = f'<br><img class="thumb" alt="task {task["task"]}" src="{escape(task["thumbnail"])}">'
            guess = ", ".join(
                f"{escape(c)} ({p:.0%})"
                for c, p in zip(task.get("predicted", []), task.get("confidence", []), strict=False)
            )
            reason = "served at random (audit)" if task.get("audit") else task["strategy"]
            out.append(
                f"<tr><td>{task['position']}</td><td>task {task['task']}{content}</td>"
                f'<td>{guess or "no guess yet"}</td><td class="reason">{escape(reason)}</td>'
                f"<td>{_contribution_bar(task.get('contributions', {}))}</td></tr>"
            )
        out.append("</table>")
    disagreements = overview["disagreements"]
    if disagreements.get("tasks"):
        out.append(f"<h2>Annotators disagree on {disagreements['tasks']} task(s)</h2>")
        out.append('<table id="conflicts"><tr><th>task</th><th>votes</th><th>trained on</th></tr>')
        for f in disagreements.get("flagged", [])[:20]:
            votes = ", ".join(f"{escape(k)}: {v}" for k, v in f["votes"].items())
            out.append(
                f"<tr><td>task {f['task']}</td><td>{votes}</td><td>{escape(', '.join(f['agreed'] or []))}</td></tr>"
            )
        out.append("</table>")
    out.append(
        '<h2>Last rounds</h2><table id="timings"><tr><th>round</th><th>when</th><th>seconds</th></tr>'
    )
    for t in reversed(overview["timings"]):
        stages = ", ".join(f"{k} {v:.1f}" for k, v in t["seconds"].items() if k != "total")
        out.append(f'<tr><td>{t["round"]}</td><td>{escape(t["time"] or "")}</td>'
                   f'<td>{t["seconds"].get("total", 0):.1f} s <span class="muted">({escape(stages)})</span></td></tr>')  # fmt: skip
    out.append("</table>")
    return _page(f"AutoAL project {pid}", "".join(out), refresh=status["state"] not in ("idle",))
