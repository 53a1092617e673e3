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

  show('interval', INTERVAL_MS / 1000);
  refresh();
})();
