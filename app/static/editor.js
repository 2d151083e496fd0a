// The review tab's point editor (app/editor.py). Runs as a gr.HTML js_on_load: `element`, `props`,
// `trigger` and `watch` come from Gradio. Colours come from Python (props.colors, from model.draw):
// ground truth rings, prediction dots in region colours, error lines; nothing is retyped here.
const NS = 'http://www.w3.org/2000/svg';
const ZOOM_STEP = 1.5, POINT_PX = 5, HIT_PX = 9, LABEL_PX = 11, DRAG_PX = 2;
const ZOOM_KEYS = {'+': 1, '=': 1, '-': -1, '_': -1};   // '=' is '+' without Shift on most layouts
let S = null;                 // the open face: points, history, view
const show = {gt: true, pred: true, err: true, labels: false};

function rgb(c) { return 'rgb(' + c.join(',') + ')'; }
const GT = rgb(props.colors.gt), ERR = rgb(props.colors.error), FIXED = rgb(props.colors.fixed);
function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function host() { return element.querySelector('.le-host') || element; }

let loads = 0;                // how many values were shown (tests wait for a new one)
function load() {
  const v = props.value;
  const h = host();
  h.innerHTML = '';
  h.dataset.loads = String(++loads);
  if (!v || !v.gt) {
    S = null;
    const d = document.createElement('div');
    d.className = 'le-empty';
    d.textContent = 'No face open: open one from its index or from the WFLW browser gallery.';
    h.appendChild(d);
    return;
  }
  const fixed = new Set(Object.keys(v.fixed || {}).map(Number));
  const pos = v.gt.map((p, i) => fixed.has(i) ? v.fixed[String(i)].slice() : p.slice());
  S = {v: v, pos: pos, fixed: fixed, selected: null, undo: [], redo: [], drag: null, pan: null,
       view: {x: v.crop[0], y: v.crop[1], w: v.crop[2]}};
  build(h);
  draw();
}

function build(h) {
  const bar = document.createElement('div');
  bar.className = 'le-bar';
  const btn = (text, title, fn, cls) => {
    const b = document.createElement('button');
    b.type = 'button'; b.textContent = text; b.title = title; b.className = cls;
    b.addEventListener('click', fn); bar.appendChild(b);
  };
  btn('+', 'Zoom in', () => zoomBy(ZOOM_STEP), 'le-zoom-in');
  btn('−', 'Zoom out', () => zoomBy(1 / ZOOM_STEP), 'le-zoom-out');
  btn('Fit', 'Show the whole face', () => { S.view = {x: S.v.crop[0], y: S.v.crop[1], w: S.v.crop[2]}; draw(); }, 'le-fit');
  btn('Undo', 'Undo the last move (z)', undo, 'le-undo');
  btn('Redo', 'Redo (Shift+Z)', redo, 'le-redo');
  const noPred = !S.v.pred;         // nothing to draw for these toggles until there are predictions
  for (const [key, text, swatch] of [['gt', props.legend.gt, GT], ['pred', props.legend.pred, 'region'],
                                     ['err', props.legend.error, ERR], ['labels', 'Labels', null]]) {
    const l = document.createElement('label');
    const c = document.createElement('input');
    const unavailable = noPred && (key === 'pred' || key === 'err');
    c.type = 'checkbox'; c.checked = show[key] && !unavailable; c.disabled = unavailable;
    c.className = 'le-show-' + key;
    if (unavailable) { l.className = 'le-unavailable'; l.title = props.no_predictions; }
    c.addEventListener('change', () => { show[key] = c.checked; draw(); });
    l.appendChild(c);
    if (swatch) {                  // the legend: the same colours as the drawing below
      const s = document.createElement('span');
      s.className = 'le-swatch le-swatch-' + key;
      if (swatch === 'region') s.style.background = 'linear-gradient(90deg,' + props.colors.regions.map(rgb).join(',') + ')';
      else s.style.background = swatch;
      l.appendChild(s);
    }
    l.appendChild(document.createTextNode(text)); bar.appendChild(l);
  }
  if (noPred) {
    const note = document.createElement('span');
    note.className = 'le-no-pred'; note.textContent = props.no_predictions;
    bar.appendChild(note);
  }
  h.appendChild(bar);
  const svg = el('svg', {class: 'le-svg', preserveAspectRatio: 'xMidYMid meet'}, h);
  el('image', {href: S.v.image, x: S.v.image_box[0], y: S.v.image_box[1], width: S.v.image_box[2],
               height: S.v.image_box[2], preserveAspectRatio: 'none', 'pointer-events': 'none'}, svg);
  S.layers = {};
  for (const name of ['err', 'pred', 'orig', 'gt', 'labels']) S.layers[name] = el('g', {class: 'le-layer-' + name}, svg);
  const status = document.createElement('div');
  status.className = 'le-status';
  h.appendChild(status);
  S.svg = svg; S.status = status;
  svg.addEventListener('pointerdown', onDown);
  svg.addEventListener('pointermove', onMove);
  svg.addEventListener('pointerup', onUp);
  svg.addEventListener('pointercancel', cancelDrag);
  svg.addEventListener('wheel', onWheel, {passive: false});
}

function unitsPerPx() {            // image pixels per screen pixel at the current zoom
  const r = S.svg.getBoundingClientRect();
  return S.view.w / Math.max(1, Math.min(r.width, r.height));
}

function draw() {
  if (!S) return;
  const u = unitsPerPx(), v = S.v, L = S.layers;
  S.svg.setAttribute('viewBox', [S.view.x, S.view.y, S.view.w, S.view.w].join(' '));
  for (const k in L) L[k].innerHTML = '';
  for (let i = 0; i < S.pos.length; i++) {
    const [x, y] = S.pos[i], c = rgb(v.colors[i]);   // c: the point's region colour (prediction)
    if (show.err && v.pred) el('line', {x1: v.pred[i][0], y1: v.pred[i][1], x2: x, y2: y, stroke: ERR,
                                       'stroke-width': 1.2 * u}, L.err);
    if (show.pred && v.pred) el('circle', {cx: v.pred[i][0], cy: v.pred[i][1], r: 2.5 * u, fill: c,
                                          stroke: '#000', 'stroke-width': 0.8 * u, class: 'le-pred'}, L.pred);
    if (!show.gt) continue;
    const sel = S.selected === i, fixedNow = S.fixed.has(i);
    if (fixedNow) {
      // The annotation's original position: a white cross outlined in black (seen on any photo).
      const [ox, oy] = v.gt[i], s = 5 * u;       // a 10 px cross at every zoom
      const cross = `M${ox - s},${oy - s}L${ox + s},${oy + s}M${ox - s},${oy + s}L${ox + s},${oy - s}`;
      el('path', {d: cross, stroke: '#000', 'stroke-width': 3.5 * u, 'stroke-linecap': 'round',
                  class: 'le-orig-outline'}, L.orig);
      el('path', {d: cross, stroke: '#fff', 'stroke-width': 1.5 * u, 'stroke-linecap': 'round',
                  class: 'le-orig'}, L.orig);
      const r = (sel ? 1.5 : 1.1) * POINT_PX * u;  // corrected: a filled diamond in the corrected colour
      el('path', {d: `M${x},${y - r}L${x + r},${y}L${x},${y + r}L${x - r},${y}Z`, fill: FIXED, stroke: '#000',
                  'stroke-width': (sel ? 2 : 1.2) * u, class: 'le-gt le-fixed', 'data-i': i}, L.gt);
    } else {
      el('circle', {cx: x, cy: y, r: (sel ? 1.4 : 1) * POINT_PX * u, fill: 'none', stroke: GT,
                    'stroke-width': (sel ? 3 : 1.8) * u, class: 'le-gt', 'data-i': i}, L.gt);
    }
    el('circle', {cx: x, cy: y, r: HIT_PX * u, fill: 'transparent', class: 'le-gt le-hit', 'data-i': i}, L.gt);
    if (sel) el('circle', {cx: x, cy: y, r: 2.4 * POINT_PX * u, fill: 'none', stroke: '#ffff00',
                           'stroke-width': 1.5 * u, 'pointer-events': 'none'}, L.gt);
    if (show.labels || sel) {
      const t = el('text', {x: x + 6 * u, y: y - 4 * u, 'font-size': LABEL_PX * u, 'stroke-width': 3 * u,
                            class: 'le-label'}, L.labels);
      t.textContent = String(i);
    }
  }
  const i = S.selected;
  S.status.textContent = i === null
    ? `Face ${v.face}: click a ground-truth point to select it, drag to move it (Esc cancels); wheel, the + / − keys or the buttons zoom, drag the image to pan.`
    : `Point ${i} (${v.regions[i]}) at (${S.pos[i][0].toFixed(1)}, ${S.pos[i][1].toFixed(1)})` +
      (S.fixed.has(i) ? ' · corrected' : '');
  element.dataset.selected = i === null ? '' : String(i);
  element.dataset.face = String(v.face);
}

function toImage(e) {
  const p = S.svg.createSVGPoint();
  p.x = e.clientX; p.y = e.clientY;
  const q = p.matrixTransform(S.svg.getScreenCTM().inverse());
  return [q.x, q.y];
}

function nearest(e) {              // the ground-truth point nearest the pointer, within HIT_PX on screen
  if (!show.gt) return null;
  const [x, y] = toImage(e), reach = HIT_PX * unitsPerPx();
  let best = null, bestD = reach;
  S.pos.forEach((p, i) => {
    const d = Math.hypot(p[0] - x, p[1] - y);
    if (d <= bestD) { best = i; bestD = d; }
  });
  return best;
}

function onDown(e) {
  if (!S || e.button !== 0) return;
  const i = nearest(e);
  S.svg.setPointerCapture(e.pointerId);
  if (i !== null) {
    S.selected = i;
    S.drag = {i: i, from: S.pos[i].slice(), x0: e.clientX, y0: e.clientY, moved: false};
  } else {
    S.pan = {x0: e.clientX, y0: e.clientY, view: Object.assign({}, S.view), u: unitsPerPx()};
  }
  draw();
}

function onMove(e) {
  if (!S) return;
  if (S.drag) {
    const d = S.drag;
    if (!d.moved && Math.hypot(e.clientX - d.x0, e.clientY - d.y0) < DRAG_PX) return;
    d.moved = true;
    S.pos[d.i] = toImage(e);
    draw();
  } else if (S.pan) {
    S.view.x = S.pan.view.x - (e.clientX - S.pan.x0) * S.pan.u;
    S.view.y = S.pan.view.y - (e.clientY - S.pan.y0) * S.pan.u;
    draw();
  }
}

function onUp(e) {
  if (!S) return;
  if (S.drag) {
    const d = S.drag;
    S.drag = null;
    if (d.moved) {
      S.pos[d.i] = toImage(e);
      commit({i: d.i, from: d.from, to: S.pos[d.i].slice(), wasFixed: S.fixed.has(d.i)});
    }
  }
  S.pan = null;
  draw();
}

function cancelDrag() {
  if (S && S.drag) { S.pos[S.drag.i] = S.drag.from; S.drag = null; draw(); }
  if (S) S.pan = null;
}

function send(op, to) {
  if (to) trigger('move', {face: S.v.face, point: op.i, x: to[0], y: to[1]});
  else trigger('unmove', {face: S.v.face, point: op.i});
}

function commit(op) {
  S.fixed.add(op.i);
  S.undo.push(op); S.redo = [];
  send(op, op.to);
}

function undo() {
  if (!S || !S.undo.length) return;
  const op = S.undo.pop();
  S.pos[op.i] = op.from.slice(); S.selected = op.i;
  if (op.wasFixed) send(op, op.from); else { S.fixed.delete(op.i); send(op, null); }
  S.redo.push(op); draw();
}

function redo() {
  if (!S || !S.redo.length) return;
  const op = S.redo.pop();
  S.pos[op.i] = op.to.slice(); S.selected = op.i; S.fixed.add(op.i);
  send(op, op.to);
  S.undo.push(op); draw();
}

function zoomBy(f, cx, cy) {
  if (!S) return;
  const w = Math.min(Math.max(S.view.w / f, S.v.crop[2] / 40), S.v.crop[2] * 4);
  if (cx === undefined) { cx = S.view.x + S.view.w / 2; cy = S.view.y + S.view.w / 2; }
  S.view.x = cx - (cx - S.view.x) * w / S.view.w;
  S.view.y = cy - (cy - S.view.y) * w / S.view.w;
  S.view.w = w;
  draw();
}

function onWheel(e) {
  if (!S) return;
  e.preventDefault();
  const [x, y] = toImage(e);
  zoomBy(e.deltaY < 0 ? 1.25 : 0.8, x, y);
}

function clickId(id) {
  const b = document.getElementById(id);
  const target = b && (b.tagName === 'BUTTON' ? b : b.querySelector('button'));
  if (target && !target.disabled) target.click();
}

document.addEventListener('keydown', (e) => {
  if (element.offsetParent === null || e.ctrlKey || e.metaKey || e.altKey) return;
  const tag = (e.target && e.target.tagName) || '';
  if (['INPUT', 'TEXTAREA', 'SELECT'].includes(tag) || (e.target && e.target.isContentEditable)) return;
  if (e.key === 'Escape') { if (S && S.drag) cancelDrag(); else if (S) { S.selected = null; draw(); } return; }
  if (e.key === 'z' || e.key === 'Z') { e.preventDefault(); if (e.shiftKey) redo(); else undo(); return; }
  if (S && ZOOM_KEYS[e.key]) { e.preventDefault(); zoomBy(ZOOM_KEYS[e.key] > 0 ? ZOOM_STEP : 1 / ZOOM_STEP); return; }
  const k = Number(e.key);
  if (k >= 1 && k <= props.verdicts.length) {
    const input = document.querySelector(`#${props.verdict_id} input[value="${props.verdicts[k - 1]}"]`);
    if (input && !input.disabled) { e.preventDefault(); input.click(); }
    return;
  }
  if (props.hotkeys[e.key]) { e.preventDefault(); clickId(props.hotkeys[e.key]); }
});
window.addEventListener('resize', draw);
watch('value', load);
load();
