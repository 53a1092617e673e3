// The mqttx status page: polls the admin API and renders what it says.
// Everything a client chose (client ids, topic filters, user names) is set
// with textContent, never parsed as HTML.
'use strict';

(() => {
  const INTERVAL_MS = 2000;
  const CLIENTS = 200;
  const SUBSCRIPTIONS = 500;
  // The page's own address may carry user:password@ (a browser keeps what
  // it was opened with as the base URL), which fetch refuses: build API URLs
  // from the origin alone. The browser sends the Basic credentials it has
  // for this origin with same-origin requests.
  const api = (path) => new URL(path, window.location.origin);
  let previous = null;

  async function getJSON(path) {
    const response = await fetch(api(path), {
      headers: { Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'same-origin',
    });
    if (!response.ok) {
      throw new Error(`${path}: HTTP ${response.status}`);
    }
    return response.json();
  }

  function show(id, value) {
    document.getElementById(id).textContent = value === null || value === undefined ? '–' : String(value);
  }

  function row(values, className) {
    const tr = document.createElement('tr');
    for (const value of values) {
      const td = document.createElement('td');
      td.textContent = value === null || value === undefined ? '' : String(value);
      if (className) {
        td.className = className;
      }
      tr.appendChild(td);
    }
    return tr;
  }

  function fill(tableId, rows, moreId, more) {
    document.querySelector(`#${tableId} tbody`).replaceChildren(...rows);
    document.getElementById(moreId).hidden = !more;
  }

  // Messages per second between two samples of the broker's counters,
  // over the broker's own clock.
  function rate(now, before, key) {
    if (before === null) {
      return null;
    }
    const seconds = now.time - before.time;
    if (!(seconds > 0)) {
      return null;
    }
    return ((now.messages[key] - before.messages[key]) / seconds).toFixed(1);
  }

  function render(stats, clients, subscriptions) {
    show('clients-connected', stats.clients.connected);
    show('sessions', stats.clients.sessions);
    show('subscription-count', stats.subscriptions);
    show('retained-count', stats.retained_messages);
    show('received', stats.messages.received);
    show('sent', stats.messages.sent);
    show('rate-in', rate(stats, previous, 'received'));
    show('rate-out', rate(stats, previous, 'sent'));
    previous = stats;
    fill('clients', clients.clients.map((c) => row(
      [c.client_id, c.connected ? 'connected' : 'offline', c.protocol_level, c.listener, c.peer,
        c.username, c.subscriptions, c.queued],
      c.connected ? '' : 'offline',
    )), 'clients-more', clients.next_cursor !== null);
    fill('subscriptions', subscriptions.subscriptions.map((s) => row([s.client_id, s.topic_filter, s.qos])),
      'subscriptions-more', subscriptions.next_cursor !== null);
  }

  async function refresh() {
    const state = document.getElementById('state');
    try {
      const [stats, clients, subscriptions] = await Promise.all([
        getJSON('/api/v1/stats'),
        getJSON(`/api/v1/clients?limit=${CLIENTS}`),
        getJSON(`/api/v1/subscriptions?limit=${SUBSCRIPTIONS}`),
      ]);
      render(stats, clients, subscriptions);
      state.className = '';
      state.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      state.className = 'error';
      state.textContent = `Cannot reach the admin API: ${error.message}`;
    } finally {
      window.setTimeout(refresh, INTERVAL_MS);
    }
  }

  // Live messages: a server-sent events stream of one topic filter, as the
  // admin (its ACLs apply). The table and the rate are redrawn once a
  // second, not per message, so a busy filter does not swamp the page.
  const LIVE_ROWS = 20;
  const PREVIEW_CHARS = 200;
  let stream = null;
  let received = 0;
  let latest = [];
  let lastTick = null;

  function liveState(text) {
    document.getElementById('live-state').textContent = text;
  }

  function preview(message) {
    const text = message.payload !== undefined ? message.payload : `(base64) ${message.payload_base64}`;
    return text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}…` : text;
  }

  function stopLive(why) {
    if (stream !== null) {
      stream.close();
      stream = null;
    }
    document.getElementById('live-start').disabled = false;
    document.getElementById('live-stop').disabled = true;
    liveState(why);
  }

  function startLive(filter) {
    stopLive('');
    received = 0;
    latest = [];
    lastTick = null;
    const url = api(`/api/v1/subscribe?${new URLSearchParams({ filter })}`);
    stream = new EventSource(url);
    document.getElementById('live-start').disabled = true;
    document.getElementById('live-stop').disabled = false;
    liveState('Connecting…');
    stream.addEventListener('open', () => liveState(`Watching ${filter}`));
    stream.addEventListener('message', (event) => {
      received += 1;
      latest.push(JSON.parse(event.data));
      if (latest.length > LIVE_ROWS) {
        latest = latest.slice(-LIVE_ROWS);
      }
    });
    // The broker ended the stream's client (shutdown, a kick...).
    stream.addEventListener('close', (event) => {
      const reason = JSON.parse(event.data).reason;
      stopLive(`Stream ended by the broker: ${reason}`);
    });
    stream.addEventListener('error', () => {
      if (stream !== null && stream.readyState === EventSource.CLOSED) {
        stopLive('The stream was refused (is the filter valid and allowed?)');
      } else if (stream !== null) {
        liveState('Reconnecting…');
      }
    });
  }

  function liveTick() {
    const now = performance.now();
    if (stream !== null && lastTick !== null) {
      show('live-rate', ((received - lastTick.received) / ((now - lastTick.time) / 1000)).toFixed(1));
    } else if (stream === null) {
      show('live-rate', null);
    }
    lastTick = { time: now, received };
    show('live-count', received);
    document.querySelector('#live tbody').replaceChildren(
      ...latest.slice().reverse().map((m) => row([m.topic, m.qos, m.retain ? 'yes' : 'no', preview(m)])),
    );
  }

  document.getElementById('live-form').addEventListener('submit', (event) => {
    event.preventDefault();
    startLive(document.getElementById('live-filter').value);
  });
  document.getElementById('live-stop').addEventListener('click', () => stopLive('Stopped'));
  window.setInterval(liveTick, 1000);

  show('interval', INTERVAL_MS / 1000);
  refresh();
})();
