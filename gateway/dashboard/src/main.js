import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';

// The dashboard: one page over the gateway's own API. Pipeline health arrives by Server-Sent Events
// (/api/v1/events/stream); each event also refreshes the open panel, so every panel is live.
// Each drawn table, list or chart carries data-count (what it shows), which the browser tests read.

const $ = id => document.getElementById(id);
const auth = { token: null, apiKey: null, userId: null };
const defaults = { weights: 'synthetic-00000', cgm: 'cgm-sample-dexcom', checkins: 'demo-alice' };
let openPanel = 'pipeline';

function headers() {
  if (auth.token) return { Authorization: `Bearer ${auth.token}` };
  if (auth.apiKey) return { 'X-Api-Key': auth.apiKey };
  return {};
}

async function getJson(path) {
  const response = await fetch(path, { headers: headers() });
  if (response.status === 404) return null;
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail ?? detail; } catch { /* not JSON */ }
    throw new Error(`${path}: ${response.status} ${detail}`);
  }
  return response.json();
}

function element(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function fillRows(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows.map(r => {
    const tr = element('tr', undefined, r.cls);
    for (const c of r.cells) tr.append(typeof c === 'object' && c ? element('td', c.text, c.cls) : element('td', c));
    return tr;
  }));
  table.dataset.count = rows.length;
}

const fmt = (x, digits = 1) => (x === null || x === undefined || Number.isNaN(x)) ? '–' : Number(x).toFixed(digits);
const toSeconds = iso => Date.parse(iso) / 1000;

// ---- sign in -------------------------------------------------------------------------------
function showSignedIn() {
  $('signed-in').textContent = auth.token ? `signed in as ${auth.userId}` : auth.apiKey ? 'using an API key' : 'not signed in';
  if (auth.userId) for (const panel of Object.keys(defaults)) $(`${panel}-user`).value = auth.userId;
}

$('sign-in').addEventListener('submit', async event => {
  event.preventDefault();
  const email = $('email').value.trim(), password = $('password').value, apiKey = $('api-key').value.trim();
  try {
    if (email) {
      const response = await fetch('/api/v1/auth/token', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ grant_type: 'password', email, password }),
      });
      if (!response.ok) throw new Error(`sign-in refused (${response.status})`);
      const token = await response.json();
      Object.assign(auth, { token: token.access_token, apiKey: null, userId: token.user_id });
    } else if (apiKey) {
      Object.assign(auth, { token: null, apiKey, userId: null });
    }
    sessionStorage.setItem('streamhealth-auth', JSON.stringify(auth));
    showSignedIn();
    refreshPanel();
  } catch (error) {
    $('signed-in').textContent = error.message;
  }
});

// ---- panels --------------------------------------------------------------------------------
function open(panel) {
  openPanel = panel;
  for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.panel === panel);
  for (const p of document.querySelectorAll('.panel')) p.classList.toggle('active', p.id === `panel-${panel}`);
  history.replaceState(null, '', `#${panel}`);
  refreshPanel();
}
for (const button of document.querySelectorAll('#tabs button'))
  button.addEventListener('click', () => open(button.dataset.panel));
for (const form of document.querySelectorAll('.user-form'))
  form.addEventListener('submit', event => { event.preventDefault(); refreshPanel(); });

const loaders = { pipeline: loadPipeline, weights: loadWeights, cgm: loadCgm, network: loadNetwork, checkins: loadCheckins };
let loading = false;
async function refreshPanel() {
  if (loading) return;
  loading = true;
  try { await loaders[openPanel](); }
  catch (error) { reportError(error); }
  finally { loading = false; }
}

function reportError(error) {
  const target = { pipeline: 'pipeline-status', weights: 'weights-latest', cgm: 'cgm-latest', network: 'network-status' }[openPanel];
  if (target) { $(target).textContent = error.message; $(target).className = 'error'; }
  else $('checkins-feed').replaceChildren(element('li', error.message, 'error'));
}

// ---- pipeline health -------------------------------------------------------------------------
function drawPipeline(view) {
  const status = $('pipeline-status');
  status.className = view.status === 'degraded' ? 'degraded' : '';
  status.textContent = view.status === 'degraded'
    ? `degraded: ${view.stalled.map(s => s.summary).join('; ')}` : `${view.status}: ${view.hosts.length} host(s)`;
  const rows = [];
  for (const host of view.hosts) {
    const perTask = host.tasks.length ? host.recordsInPerSecond / host.tasks.length : 0;
    for (const t of host.tasks)
      rows.push({ cls: t.stalled ? 'degraded' : '', cells: [host.hostId, 'task', `${t.applicationId} ${t.task}`,
        { text: t.lag, cls: 'num' }, { text: fmt(perTask), cls: 'num' }, { text: host.deadLettered, cls: 'num' }, t.stalled ? 'degraded' : 'ok'] });
    for (const s of host.sinks)
      rows.push({ cls: s.stalled ? 'degraded' : '', cells: [host.hostId, 'sink', s.name,
        { text: s.lag, cls: 'num' }, { text: fmt(host.recordsOutPerSecond), cls: 'num' }, { text: s.deadLettered, cls: 'num' },
        s.stalled ? 'degraded' : s.paused ? 'paused' : 'ok'] });
  }
  fillRows($('pipeline-table'), rows);
}

async function loadPipeline() {
  drawPipeline(await getJson('/api/v1/streams'));
}

// ---- charts ----------------------------------------------------------------------------------
const charts = {};
function plot(name, options, data) {
  const target = $(`${name}-chart`);
  charts[name]?.destroy();
  charts[name] = new uPlot({ width: 820, height: 300, ...options }, data, target);
}

const dot = (size, fill) => ({ show: true, size, fill, stroke: fill });
const pointsOnly = { paths: () => null };

// The confidence band: the filter reports confidence = exp(-z²/2) for the innovation z = error/σ, so σ = |error|/z;
// the band is the filtered weight ± 2σ (the last σ carries over measurements too close to the prediction to give one).
function weightBand(points) {
  let sigma = null;
  return points.map(p => {
    if (p.accepted && p.prediction_error !== null && p.confidence > 0 && p.confidence < 0.999) {
      const z = Math.sqrt(-2 * Math.log(p.confidence));
      if (z > 0.05) sigma = Math.min(Math.abs(p.prediction_error) / z, 3);
    }
    return sigma === null || p.filtered_weight === null ? [null, null] : [p.filtered_weight - 2 * sigma, p.filtered_weight + 2 * sigma];
  });
}

async function loadWeights() {
  const user = $('weights-user').value.trim() || defaults.weights;
  $('weights-user').value = user;
  let history = await getJson(`/api/weight/${encodeURIComponent(user)}/history?limit=10000`);
  if (!history?.measurements.length) {
    // Nothing in the default 90 days: show the 90 days up to the person's latest measurement instead.
    const latest = await getJson(`/api/weight/${encodeURIComponent(user)}/latest`);
    if (latest) {
      const to = new Date(Date.parse(latest.timestamp) + 1000);
      const from = new Date(to.getTime() - 90 * 86_400_000);
      history = await getJson(`/api/weight/${encodeURIComponent(user)}/history?limit=10000&from=${from.toISOString()}&to=${to.toISOString()}`);
    }
  }
  const points = history?.measurements ?? [];
  const latest = points.at(-1);
  $('weights-latest').className = '';
  $('weights-latest').textContent = latest
    ? `${points.length} measurements; latest ${fmt(latest.filtered_weight)} kg (trend ${fmt(latest.trend_kg_per_week, 2)} kg/week) at ${latest.timestamp}`
    : `no measurements of ${user}`;
  const band = weightBand(points);
  plot('weights', {
    series: [{},
      { label: 'band low', stroke: 'transparent', points: { show: false } },
      { label: 'band high', stroke: 'transparent', points: { show: false } },
      { label: 'filtered kg', stroke: '#1b7f3b', width: 2, spanGaps: true },
      { label: 'accepted kg', stroke: '#1d4f91', ...pointsOnly, points: dot(6, '#1d4f91') },
      { label: 'rejected kg', stroke: '#b3261e', ...pointsOnly, points: { show: true, size: 9, fill: '#fff', stroke: '#b3261e', width: 2 } }],
    bands: [{ series: [2, 1], fill: 'rgba(27, 127, 59, 0.15)' }],
  }, [points.map(p => toSeconds(p.timestamp)), band.map(b => b[0]), band.map(b => b[1]),
      points.map(p => p.filtered_weight), points.map(p => p.accepted ? p.raw_weight : null),
      points.map(p => p.accepted ? null : p.raw_weight)]);
  $('weights-chart').dataset.count = points.length;
  $('weights-chart').dataset.rejected = points.filter(p => !p.accepted).length;
  $('weights-chart').dataset.newest = latest?.timestamp ?? '';
}

// ---- CGM: the last 24 h of readings and the latest forecast fan ------------------------------
async function loadCgm() {
  const user = $('cgm-user').value.trim() || defaults.cgm;
  $('cgm-user').value = user;
  const [latest, forecast] = await Promise.all([
    getJson(`/api/v1/cgm/${encodeURIComponent(user)}/latest`),
    getJson(`/api/v1/cgm/${encodeURIComponent(user)}/forecast`).catch(() => null)]);
  // With a forecast: the 6 h of readings it was made from, then its fan; without: the 24 h up to the latest reading
  // (a replayed export's readings may be days old).
  const end = forecast ? Date.parse(forecast.forecast_time) : latest ? Date.parse(latest.time) : Date.now();
  const from = new Date(end - (forecast ? 6 : 24) * 3_600_000).toISOString(), to = new Date(end + 1000).toISOString();
  const page = await getJson(`/api/v1/cgm/${encodeURIComponent(user)}/readings?from=${from}&to=${to}`);
  $('cgm-latest').className = '';
  $('cgm-latest').textContent = latest
    ? `latest ${fmt(latest.glucose_mg_dl, 0)} mg/dL ${latest.trend_arrow} at ${latest.time}${forecast ? `; forecast ${forecast.forecast_time} (${forecast.model_version})` : '; no forecast yet'}`
    : `no readings of ${user}`;
  const readings = (page?.readings ?? []).filter(r => r.glucose_mg_dl !== null);
  const times = readings.map(r => toSeconds(r.time));
  const glucose = readings.map(r => r.glucose_mg_dl);
  const fan = forecast?.bands ?? [];
  const steps = forecast?.median_mg_dl.length ?? 0;
  // One x axis: readings, then the forecast's steps after its forecast time.
  const start = forecast ? toSeconds(forecast.forecast_time) : 0;
  const x = [...times, ...Array.from({ length: steps }, (_, i) => start + (i + 1) * forecast.step_minutes * 60)];
  const pad = (values, before) => [...Array(before).fill(null), ...values];
  const outer = fan.length ? [fan[0], fan[fan.length - 1]] : [];
  const series = [{}, { label: 'glucose mg/dL', stroke: '#1d4f91', ...pointsOnly, points: dot(4, '#1d4f91') }];
  const data = [x, [...glucose, ...Array(steps).fill(null)]];
  if (forecast) {
    for (const b of outer) { series.push({ label: `${Math.round(b.quantile * 100)} %`, stroke: 'rgba(27,127,59,0.4)', points: { show: false } }); data.push(pad(b.glucose_mg_dl, times.length)); }
    series.push({ label: 'forecast median', stroke: '#1b7f3b', width: 2 });
    data.push(pad(forecast.median_mg_dl, times.length));
  }
  plot('cgm', { series, bands: outer.length === 2 ? [{ series: [3, 2], fill: 'rgba(27, 127, 59, 0.18)' }] : [] }, data);
  $('cgm-chart').dataset.count = readings.length;
  $('cgm-chart').dataset.forecastSteps = steps;
}

// ---- the water network ---------------------------------------------------------------------
async function loadNetwork() {
  const [status, nodes, anomalies] = await Promise.all([
    getJson('/api/v1/status'), getJson('/api/v1/nodes'), getJson('/api/v1/anomalies?state=open')]);
  const list = nodes?.nodes ?? [];
  $('network-status').className = '';
  $('network-status').textContent = status
    ? `${status.nodes} nodes in ${status.districts} districts, ${status.nodes_reporting} reporting, ${status.open_anomalies} open anomalies`
    : 'no network';
  const quality = await Promise.all(list.filter(n => n.kind === 'quality_probe').slice(0, 20)
    .map(n => getJson(`/api/v1/quality/${encodeURIComponent(n.node_id)}`).then(q => [n.node_id, q]).catch(() => [n.node_id, null])));
  const qualityOf = Object.fromEntries(quality);
  fillRows($('network-nodes'), [...list].sort((a, b) => a.district_id.localeCompare(b.district_id) || a.node_id.localeCompare(b.node_id))
    .map(n => ({ cells: [n.district_id, n.name ?? n.node_id, n.kind, n.metrics.join(', '), describeQuality(qualityOf[n.node_id])] })));
  fillRows($('network-anomalies'), (anomalies?.anomalies ?? []).map(a => ({
    cls: a.severity === 'high' || a.severity === 'critical' ? 'degraded' : '',
    cells: [a.district_id, a.kind, a.severity, a.started_at, a.reason] })));
}

function describeQuality(q) {
  if (!q || q.windows_judged === 0) return '';
  const newest = q.windows[0];
  return `${fmt(100 * (q.usable_fraction ?? 0), 0)} % usable${newest ? `; latest ${newest.metric} score ${fmt(newest.score, 2)}` : ''}`;
}

// ---- the call-log check-in feed ------------------------------------------------------------
async function loadCheckins() {
  const user = $('checkins-user').value.trim() || defaults.checkins;
  $('checkins-user').value = user;
  const page = await getJson(`/api/v1/checkins/user/${encodeURIComponent(user)}?limit=50`);
  const checkins = page?.checkins ?? [];
  const feed = $('checkins-feed');
  feed.replaceChildren(...(checkins.length ? checkins.map(c => element('li',
    `${c.started_at} · ${c.provider} · ${c.duration_s} s · ${c.medication_count} medication, ${c.food_count} food, ${c.symptom_count} symptom entries`))
    : [element('li', `no check-ins of ${user}`)]));
  feed.dataset.count = checkins.length;
}

// ---- live updates ----------------------------------------------------------------------------
let events = 0;
function connect() {
  const source = new EventSource('/api/v1/events/stream');
  source.addEventListener('open', () => { $('live').dataset.state = 'open'; $('live').textContent = 'live'; });
  source.addEventListener('streams', message => {
    drawPipeline(JSON.parse(message.data));
    // The other panels re-read their data every few pipeline events (every ~10 s).
    if (openPanel !== 'pipeline' && ++events % 5 === 0) refreshPanel();
  });
  source.addEventListener('error', () => { $('live').dataset.state = 'error'; $('live').textContent = 'live: reconnecting'; });
}

const saved = sessionStorage.getItem('streamhealth-auth');
if (saved) Object.assign(auth, JSON.parse(saved));
// On the local stack (a loopback address) the page starts with its development key, so that every panel fills at once;
// the gateway refuses that key outside Development.
else if (['127.0.0.1', 'localhost', '[::1]'].includes(location.hostname)) {
  auth.apiKey = 'dev-key-change-me';
  $('api-key').value = auth.apiKey;
}
showSignedIn();
connect();
// A panel can be linked to: /#weights, /#cgm, /#network, /#checkins.
const linked = location.hash.slice(1);
if (linked in loaders) open(linked); else refreshPanel();
