"""``report.html``: one static page (no server, no network) with the tables and an image viewer.

The page holds the quality and cost tables (click a header to sort; the small script is inline), the protocol
record, the provenance, and for each chosen image a viewer showing input, every method and GT at full resolution
(optionally enlarged 2x / 4x, pixels kept sharp): buttons, a slider, or the keys 1-9 and left/right arrows (for
the viewer last used) switch the picture. Images
are files next to the page (``images/...``), referenced by relative paths.
"""
import html
import json

from restorevar_plugin.benchmark.tables import COST_COLUMNS, MISSING, cost_cell

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f0f0f0; cursor: pointer; user-select: none; }
th.sorted-asc::after { content: ' \\25B2'; } th.sorted-desc::after { content: ' \\25BC'; }
td:first-child, th:first-child { text-align: left; }
td.best { font-weight: bold; } td.second { text-decoration: underline; }
tr.reference td { color: #666; font-style: italic; }
.note { color: #555; font-size: 0.85em; max-width: 70em; }
.viewer { margin: 1em 0 2em; } .viewer img { display: block; max-width: none; image-rendering: pixelated; }
.viewer button { margin: 0 3px 6px 0; } .viewer button.active { background: #333; color: white; }
.frame { overflow: auto; max-width: 100%; width: fit-content; border: 1px solid #ddd; margin-top: 6px; }
"""

SCRIPT = """
(function () {
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th').forEach(function (th, col) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var asc = !th.classList.contains('sorted-asc');
        table.querySelectorAll('th').forEach(function (h) { h.classList.remove('sorted-asc', 'sorted-desc'); });
        th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute('data-value'), y = b.cells[col].getAttribute('data-value');
          var nx = parseFloat(x), ny = parseFloat(y), c;
          if (isNaN(nx) || isNaN(ny)) { c = isNaN(nx) - isNaN(ny) || String(x).localeCompare(String(y)); }
          else { c = nx - ny; }
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var current = null;
  function show(viewer, index) {
    var panels = JSON.parse(viewer.getAttribute('data-panels'));
    index = (index + panels.length) % panels.length;
    var img = viewer.querySelector('img');
    img.src = panels[index].src; img.alt = panels[index].label;
    viewer.querySelector('.shown').textContent = panels[index].label;
    viewer.querySelector('input[type=range]').value = index;
    viewer.querySelectorAll('button').forEach(function (b, i) { b.classList.toggle('active', i === index); });
    viewer.setAttribute('data-index', index);
    current = viewer;
  }
  document.querySelectorAll('.viewer').forEach(function (viewer) {
    viewer.querySelectorAll('button').forEach(function (b, i) {
      b.addEventListener('click', function () { show(viewer, i); });
    });
    viewer.querySelector('input[type=range]').addEventListener('input', function (e) {
      show(viewer, parseInt(e.target.value, 10));
    });
    viewer.addEventListener('mouseenter', function () { current = viewer; });
    viewer.querySelector('select.zoom').addEventListener('change', function (e) {
      var img = viewer.querySelector('img'), zoom = parseFloat(e.target.value);
      img.style.width = zoom === 1 ? '' : (img.naturalWidth * zoom) + 'px';
    });
  });
  document.addEventListener('keydown', function (e) {
    if (!current) { current = document.querySelector('.viewer'); }
    if (!current) { return; }
    var index = parseInt(current.getAttribute('data-index'), 10);
    if (e.key === 'ArrowRight') { show(current, index + 1); }
    else if (e.key === 'ArrowLeft') { show(current, index - 1); }
    else if (e.key >= '1' && e.key <= '9') { show(current, parseInt(e.key, 10) - 1); }
  });
})();
"""


def _escape(value):
    return html.escape(str(value), quote=True)


def quality_table_html(table):
    """One quality table as a sortable HTML table; cells carry ``data-method/-dataset/-metric/-value``."""
    headers = ['<th>Method</th>'] + [f'<th>{_escape(column.dataset)}<br>{_escape(column.metric)} '
                                     f'{"↓" if column.lower_better else "↑"}</th>' for column in table.columns]
    ranks = [table.ranks(column) for column in table.columns]
    body = []
    for method in table.rows:
        cells = [f'<td data-value="{_escape(method)}">{_escape(method)}</td>']
        for column, column_ranks in zip(table.columns, ranks):
            value = table.values.get((method, column.dataset, column.metric))
            text = MISSING if table.notes.get(method) == MISSING else table.formatted(method, column)
            css = {1: ' class="best"', 2: ' class="second"'}.get(column_ranks.get(method), '')
            cells.append(f'<td{css} data-method="{_escape(method)}" data-dataset="{_escape(column.dataset)}" '
                         f'data-metric="{_escape(column.metric)}" data-value="{"" if value is None else value!r}">'
                         f'{_escape(text)}</td>')
        css = ' class="reference"' if method == 'degraded input' else ''
        body.append(f'<tr{css}>' + ''.join(cells) + '</tr>')
    return (f'<table class="sortable" id="{table.key}"><thead><tr>{"".join(headers)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def cost_table_html(rows):
    """The cost rows as a sortable HTML table (``id="cost"``)."""
    headers = ''.join(f'<th>{_escape(header)}</th>' for _, header, _ in COST_COLUMNS)
    body = []
    for row in rows:
        cells = ''.join(f'<td data-field="{name}" data-value="{_escape("" if row.get(name) is None else row[name])}">'
                        f'{_escape(cost_cell(row, name, pattern))}</td>' for name, _, pattern in COST_COLUMNS)
        body.append(f'<tr>{cells}</tr>')
    return f'<table class="sortable" id="cost"><thead><tr>{headers}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def viewer_html(title, panels, index):
    """A viewer for one image: ``panels`` = ``[(label, relative src, score caption)]``; the first is shown."""
    data = json.dumps([{'label': label, 'src': src} for label, src, _ in panels])
    buttons = ''.join(f'<button type="button" data-index="{i}"{" class=active" if i == 0 else ""} '
                      f'title="{_escape(caption)}">{i + 1}: {_escape(label)}'
                      f'{f" <small>({_escape(caption)})</small>" if caption else ""}</button>'
                      for i, (label, _, caption) in enumerate(panels))
    first_label, first_src, _ = panels[0]
    return (f'<div class="viewer" id="viewer-{index}" data-index="0" data-panels="{_escape(data)}">'
            f'<h3>{_escape(title)}</h3><div>{buttons}</div>'
            f'<input type="range" min="0" max="{len(panels) - 1}" value="0" step="1" aria-label="panel"> '
            f'showing <b class="shown">{_escape(first_label)}</b> &nbsp; zoom <select class="zoom" aria-label="zoom">'
            '<option value="1">1x (full resolution)</option><option value="2">2x</option>'
            '<option value="4">4x</option></select>'
            f'<div class="frame"><img src="{_escape(first_src)}" alt="{_escape(first_label)}"></div></div>')


def report_html(title, sections):
    """The whole page. ``sections``: ``[(heading, html fragment)]`` in order."""
    parts = [f'<h2>{_escape(heading)}</h2>\n{fragment}' for heading, fragment in sections]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_escape(title)}</title>'
            f'<style>{STYLE}</style></head><body><h1>{_escape(title)}</h1>\n' + '\n'.join(parts)
            + f'\n<script>{SCRIPT}</script></body></html>\n')


def paragraph(text):
    """An escaped paragraph of note text."""
    return f'<p class="note">{_escape(text)}</p>'


def bullet_list(lines):
    """An escaped bullet list."""
    return '<ul class="note">' + ''.join(f'<li>{_escape(line)}</li>' for line in lines) + '</ul>'
