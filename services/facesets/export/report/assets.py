"""The report's inline CSS and JavaScript: no external assets, so it opens offline from file://."""

from __future__ import annotations

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;padding:16px 24px;background:#f4f4f6;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px}
h3{margin:0 0 6px;font-size:16px}
.totals{color:#555;margin-bottom:16px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:12px 16px;
  margin:0 0 12px}
.meta{display:flex;flex-wrap:wrap;gap:4px 18px;color:#444;margin-bottom:8px}
.bar{display:inline-block;width:80px;height:8px;background:#ddd;border-radius:4px;
  vertical-align:middle;margin-left:6px;overflow:hidden}
.bar i{display:block;height:100%;background:#3a7}
.sheet{display:grid;grid-template-columns:repeat(auto-fill,minmax(104px,1fr));gap:6px}
.strip{display:flex;flex-wrap:wrap;gap:4px}
.strip figure{margin:0;width:72px;font-size:10px;color:#555;text-align:center}
.sheet figure{margin:0;text-align:center;font-size:11px;color:#555}
figure img{width:100%;height:auto;aspect-ratio:1;object-fit:cover;border-radius:4px;
  background:#ccc;display:block}
figure.top img{outline:2px solid #3a7}
figure.missing img{outline:2px solid #a33}
.sources{font-size:12px;color:#666;margin:6px 0 0;padding-left:18px;word-break:break-all}
details.sources{padding-left:0}details.sources ul{padding-left:18px;margin:4px 0}
.reason{font-weight:600;color:#a33}.none{color:#777;font-style:italic}
.flag{display:inline-block;font-size:11px;padding:1px 7px;border-radius:9px;background:#e4e4ea;
  color:#333;margin-right:4px}
.flag.thin{background:#fde9c8}.flag.masked{background:#e3d7f7}.flag.merged{background:#d7e8f7}
.flag.look-alike{background:#f7d7d7}.flag.unreadable{background:#f3c4c4}
.part{color:#777;font-size:12px;margin-right:8px}
.parts{display:flex;flex-wrap:wrap;gap:6px 14px;margin:0 0 12px;padding:0;list-style:none}
.filters{position:sticky;top:0;z-index:1;background:#f4f4f6;padding:8px 0;display:flex;
  flex-wrap:wrap;gap:8px;align-items:center}
.filters input{width:280px}.filters input,.filters select{font:inherit;padding:3px 6px}
.explain{border-left:4px solid #c80}
.empty{border-left:6px solid #c83}.empty h2{margin:0 0 8px}
.gates td{padding:1px 14px 1px 0}.gates td.n{text-align:right;font-variant-numeric:tabular-nums}
.row-head{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 10px}
a{color:#2a5db0}
"""

# Sets data-images on <body> once the images that have started loading are settled, for
# automated checks: "ok", or "broken:N" when N of them failed. Images the browser defers
# (lazy, far below the screen) are not counted as broken.
CHECK_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) {
    return i.complete ? i.naturalWidth === 0 : i.loading !== 'lazy';
  });
  document.body.setAttribute('data-image-count', String(imgs.length));
  document.body.setAttribute('data-images', broken.length ? 'broken:' + broken.length : 'ok');
});
"""

# Find and filter on the overview. The state lives in the URL hash (#q=..&flag=..&part=..
# &sort=..), so a filtered view can be bookmarked or opened from a link.
FILTER_SCRIPT = """
(function () {
  var box = document.getElementById('rows');
  if (!box) { return; }
  var rows = Array.prototype.slice.call(box.querySelectorAll('section[data-faceset]'));
  var q = document.getElementById('q'), flag = document.getElementById('flag');
  var part = document.getElementById('part'), sort = document.getElementById('sort');
  var shown = document.getElementById('shown');
  rows.forEach(function (row, i) {
    var text = '';
    row.querySelectorAll('.find').forEach(function (el) { text += ' ' + el.textContent; });
    row.dataset.order = String(i);
    row._text = text.toLowerCase();
  });
  function num(row, key) { return parseFloat(row.getAttribute('data-' + key)) || 0; }
  var orders = {
    '': function (a, b) { return num(a, 'order') - num(b, 'order'); },
    'name': function (a, b) { return a.dataset.faceset.localeCompare(b.dataset.faceset); },
    'size': function (a, b) { return num(b, 'size') - num(a, 'size'); },
    'size-asc': function (a, b) { return num(a, 'size') - num(b, 'size'); },
    'quality': function (a, b) { return num(b, 'quality') - num(a, 'quality'); },
    'quality-asc': function (a, b) { return num(a, 'quality') - num(b, 'quality'); }
  };
  function read() {
    var p = new URLSearchParams(location.hash.replace(/^#/, ''));
    q.value = p.get('q') || '';
    flag.value = p.get('flag') || '';
    part.value = p.get('part') || '';
    sort.value = orders.hasOwnProperty(p.get('sort') || '') ? (p.get('sort') || '') : '';
    if (flag.value !== (p.get('flag') || '')) { flag.value = ''; }
    if (part.value !== (p.get('part') || '')) { part.value = ''; }
  }
  function write() {
    var p = new URLSearchParams();
    if (q.value) { p.set('q', q.value); }
    if (flag.value) { p.set('flag', flag.value); }
    if (part.value) { p.set('part', part.value); }
    if (sort.value) { p.set('sort', sort.value); }
    var hash = p.toString();
    try {
      history.replaceState(null, '', hash ? '#' + hash : location.pathname + location.search);
    } catch (e) { location.hash = hash; }
  }
  function apply() {
    var needle = q.value.trim().toLowerCase(), f = flag.value, pt = part.value, count = 0;
    rows.forEach(function (row) {
      var ok = (!needle || row._text.indexOf(needle) >= 0) &&
        (!f || (' ' + row.dataset.flags + ' ').indexOf(' ' + f + ' ') >= 0) &&
        (!pt || row.dataset.partition === pt);
      row.hidden = !ok;
      if (ok) { count += 1; }
    });
    rows.slice().sort(orders[sort.value] || orders['']).forEach(function (row) {
      box.appendChild(row);
    });
    shown.textContent = String(count);
    document.body.setAttribute('data-shown', String(count));
  }
  [q, flag, part, sort].forEach(function (el) {
    el.addEventListener('input', function () { write(); apply(); });
  });
  window.addEventListener('hashchange', function () { read(); apply(); });
  read();
  apply();
})();
"""
