// The Webcam tab's live view (app/tabs/webcam.py). Runs as a gr.HTML js_on_load: `element` and
// `props` come from Gradio. The camera's frames go to the stream route (app/live.py) as JPEG; each
// frame sent is kept and, when its answer comes, drawn with that answer's points: a frame is never
// shown with another frame's points, and no picture comes back from the server.
// Colours and regions come from Python (props.style: model.draw, model.layout); label places,
// line widths and point sizes come with every answer (its "overlay"); nothing is retyped here.
//
// For tests and benchmarks the element dispatches "live-sent" ({frame, canvas}) when a frame is
// sent and "live-drawn" ({frame, captured, sent, answered, drawn, server_ms, decode_ms, width, height,
// faces}) after it is drawn; times are performance.now() milliseconds.
const STATS_S = 2;          // the readout averages over the last seconds
const READOUT_MS = 250;     // and is rewritten at most this often
const CAP_HEIGHT = 0.72;    // digit height / font size of the canvas's sans-serif
const $ = (selector) => element.querySelector(selector);
const canvas = $('.lv-canvas'), view = canvas.getContext('2d');
const startButton = $('.lv-start'), stopButton = $('.lv-stop'), smooth = $('.lv-smooth');
const idle = $('.lv-idle'), readout = $('.lv-readout');
const style = props.style;
const pointColor = [];
for (const r of style.regions) for (let i = r.start; i < r.stop; i++) pointColor[i] = r.color;
const video = document.createElement('video');
video.muted = true; video.playsInline = true;
let S = null;                // the running stream: camera, session, frames in flight, statistics

function url(path) { return new URL(props.stream + '/' + path, window.location.href).href; }
function median(values) {
  if (!values.length) return NaN;
  const v = values.slice().sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)];
}

async function start() {
  if (S) return;
  const s = {stopped: false, session: null, mode: '', seq: 0, inFlight: 0, shownId: 0, slots: [],
             abort: new AbortController(), camera: null, shown: [], lastReadout: 0, error: ''};
  S = s;
  startButton.disabled = true;
  readout.textContent = 'Starting the camera…';
  try {
    s.camera = await navigator.mediaDevices.getUserMedia(
      {video: {width: {ideal: props.camera.width}, height: {ideal: props.camera.height}}, audio: false});
    video.srcObject = s.camera;
    await video.play();
    await openSession(s);
  } catch (e) {
    stop(s, e.name === 'NotAllowedError' ? 'The camera was not allowed: allow it in the browser and press Start again.'
                                         : 'Could not start: ' + e.message);
    return;
  }
  stopButton.disabled = false;
  idle.hidden = true;
  readout.textContent = 'Waiting for the first frame…';
  nextFrame(s);
}

function nextFrame(s) {            // tick on the camera's next frame (or, without that API, the next paint)
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback((now, meta) => tick(s, now, meta));
  else requestAnimationFrame((now) => tick(s, now, {}));
}

async function openSession(s) {
  const response = await fetch(url('open'), {method: 'POST', signal: s.abort.signal});
  if (!response.ok) throw new Error((await response.json()).message);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  const next = async () => {                 // the next JSON line of the session's stream, or null
    while (!buffer.includes('\n')) {
      const {value, done} = await reader.read();
      if (done) return null;
      buffer += value;
    }
    const cut = buffer.indexOf('\n'), line = buffer.slice(0, cut);
    buffer = buffer.slice(cut + 1);
    return JSON.parse(line);
  };
  const hello = await next();
  s.session = hello.session; s.mode = hello.mode; s.maxInFlight = hello.limits.max_in_flight;
  (async () => {                             // keep reading: the stream ends only with the session
    try { while (await next()) { /* pings */ } } catch (e) { /* aborted by stop() */ }
    if (!s.stopped) stop(s, 'The server ended the stream; press Start camera to begin again.');
  })();
}

function tick(s, now, meta) {
  if (s.stopped) return;
  // No frames while the tab is hidden (another tab of the app is open): the session stays open.
  const shown = canvas.offsetParent !== null;
  if (shown && video.videoWidth && s.inFlight < Math.min(props.max_in_flight, s.maxInFlight)) {
    capture(s, Math.min(meta.captureTime ?? now, performance.now()));
  }
  nextFrame(s);
}

function capture(s, captured) {
  let slot = s.slots.find((c) => !c.busy);
  if (!slot) {
    const c = document.createElement('canvas');
    slot = {canvas: c, context: c.getContext('2d'), busy: false};
    s.slots.push(slot);
  }
  const k = Math.min(1, props.camera.width / video.videoWidth, props.camera.height / video.videoHeight);
  const w = Math.round(video.videoWidth * k), h = Math.round(video.videoHeight * k);
  if (slot.canvas.width !== w || slot.canvas.height !== h) { slot.canvas.width = w; slot.canvas.height = h; }
  slot.context.drawImage(video, 0, 0, w, h);
  slot.busy = true;
  s.inFlight++;
  const frame = {id: ++s.seq, slot: slot, captured: captured};
  slot.canvas.toBlob((blob) => send(s, frame, blob), 'image/jpeg', props.jpeg_quality);
}

async function send(s, frame, blob) {
  try {
    if (s.stopped) return;
    element.dispatchEvent(new CustomEvent('live-sent',
                                          {bubbles: true, detail: {frame: frame.id, canvas: frame.slot.canvas}}));
    const path = s.session + '/frame?id=' + frame.id + '&smooth=' + (smooth.checked ? 1 : 0);
    frame.sent = performance.now();
    const response = await fetch(url(path), {method: 'POST', body: blob, signal: s.abort.signal,
                                             headers: {'Content-Type': 'image/jpeg'}});
    const answer = await response.json();
    frame.answered = performance.now();
    if (s.stopped) return;
    if (answer.type === 'result') show(s, frame, answer);
    else if (answer.type === 'error') {
      if (response.status === 404) stop(s, answer.message);
      else s.error = answer.message;
    }
  } catch (e) {
    if (!s.stopped) stop(s, 'Lost the connection to the server (' + e.message + '); press Start camera again.');
  } finally {
    frame.slot.busy = false;
    s.inFlight--;
  }
}

function show(s, frame, answer) {
  if (frame.id < s.shownId) return;          // a later frame is on screen already
  s.shownId = frame.id;
  const source = frame.slot.canvas;
  if (canvas.width !== source.width || canvas.height !== source.height) {
    canvas.width = source.width; canvas.height = source.height;
  }
  view.drawImage(source, 0, 0);
  drawOverlay(answer);
  const drawn = performance.now();
  s.shown.push({t: drawn, g2g: drawn - frame.captured, server: answer.server_ms, faces: answer.faces.length});
  while (s.shown.length && s.shown[0].t < drawn - STATS_S * 1000) s.shown.shift();
  element.dispatchEvent(new CustomEvent('live-drawn', {bubbles: true, detail: {
    frame: frame.id, captured: frame.captured, sent: frame.sent, answered: frame.answered, drawn: drawn,
    server_ms: answer.server_ms,
    decode_ms: answer.decode_ms, width: answer.width, height: answer.height, faces: answer.faces}}));
  if (drawn - s.lastReadout >= READOUT_MS) { s.lastReadout = drawn; writeReadout(s, answer); }
}

function writeReadout(s, answer) {
  const n = s.shown.length, span = n > 1 ? (s.shown[n - 1].t - s.shown[0].t) / 1000 : 0;
  const fps = span > 0 ? (n - 1) / span : 0;
  const faces = answer.faces.length;
  readout.textContent = fps.toFixed(1) + ' frames/s shown · ' +
    median(s.shown.map((x) => x.g2g)).toFixed(0) + ' ms glass to glass · server ' +
    median(s.shown.map((x) => x.server)).toFixed(0) + ' ms · ' + faces + (faces === 1 ? ' face · ' : ' faces · ') +
    answer.width + 'x' + answer.height + ' · ' + s.mode + (smooth.checked ? ' · smoothed' : '') +
    (s.error ? ' · last error: ' + s.error : '');
}

function drawOverlay(answer) {
  const o = answer.overlay;
  view.lineWidth = o.line;
  view.strokeStyle = style.box;
  for (const face of answer.faces) {
    const [x1, y1, x2, y2] = face.box;
    view.strokeRect(x1, y1, x2 - x1, y2 - y1);
  }
  answer.faces.forEach((face, i) => {
    if (face.landmarks) dots(face.landmarks, o.sizes[i]);
    if (face.five_points) crosses(face.five_points, o.sizes[i], o.marker_line);
  });
  view.font = Math.round(o.text_px / CAP_HEIGHT) + 'px sans-serif';
  view.textBaseline = 'alphabetic';
  for (const label of o.labels) if (label) drawLabel(label, o);
}

function dots(points, radius) {
  points.forEach(([x, y], i) => {
    view.fillStyle = pointColor[i];
    view.beginPath();
    view.arc(x, y, radius, 0, 2 * Math.PI);
    view.fill();
  });
}

function crosses(points, size, width) {               // white crosses outlined in black
  const border = Math.max(1, Math.floor(width / 2));
  for (const [color, grow] of [[style.outline, border], [style.five_points, 0]]) {
    const half = size / 2 + grow;
    view.strokeStyle = color;
    view.lineWidth = width + 2 * grow;
    view.beginPath();
    for (const [x, y] of points) {
      view.moveTo(x - half, y); view.lineTo(x + half, y);
      view.moveTo(x, y - half); view.lineTo(x, y + half);
    }
    view.stroke();
  }
}

function drawLabel(label, o) {                        // a number badge, then the score on a dark backing
  let [x, y1, , y2] = label.rect;
  label.parts.forEach((part, k) => {
    const badge = k === 0 && o.numbered;
    const w = view.measureText(part).width + 2 * o.pad;
    view.fillStyle = badge ? style.box : style.label_back;
    view.fillRect(x, y1, w, y2 - y1);
    view.fillStyle = badge ? style.outline : style.box;
    view.fillText(part, x + o.pad, y2 - o.pad);
    x += w + o.pad;
  });
}

function stop(s, message) {
  if (s.stopped) return;
  s.stopped = true;
  s.abort.abort();                                    // ends the session and the frames in flight
  if (s.camera) s.camera.getTracks().forEach((t) => t.stop());
  video.srcObject = null;
  if (S === s) S = null;
  startButton.disabled = false;
  stopButton.disabled = true;
  readout.textContent = message || 'Camera off.';
}

startButton.addEventListener('click', start);
stopButton.addEventListener('click', () => { if (S) stop(S, 'Stopped; press Start camera to go on.'); });
window.addEventListener('pagehide', () => { if (S) stop(S); });
