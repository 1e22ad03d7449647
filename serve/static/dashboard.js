// tonewatch supervisor dashboard: live conversations (polled) and the alert feed (Server-Sent Events).
// Plain JS, no dependencies. Transcript text is only ever set with textContent (never as HTML).
"use strict";

(function () {
  const POLL_MS = 1500;
  const MAX_ALERTS = 100;
  const SHOWN_TURNS = 3;
  const KEY_STORAGE = "tonewatch-api-key";
  const TREND_SYMBOLS = { worsening: "▲ worsening", stable: "▶ stable", calming: "▼ calming" };
  const KIND_TITLES = { alert: "ALERT", all_clear: "ALL CLEAR", ended: "ENDED" };

  // A key given as ?key= is kept for this tab only and removed from the address bar.
  const params = new URLSearchParams(window.location.search);
  let apiKey = params.get("key") || window.sessionStorage.getItem(KEY_STORAGE) || "";
  if (params.has("key")) {
    window.sessionStorage.setItem(KEY_STORAGE, apiKey);
    params.delete("key");
    const rest = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
  }
  const filters = {};
  for (const name of ["queue", "team"]) {
    if (params.get(name)) filters[name] = params.get(name);
  }

  const $ = (id) => document.getElementById(id);
  const seenEvents = new Set();
  let selectedId = null;
  let source = null;
  let pollTimer = null;
  let refreshQueued = false;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function query(extra) {
    const search = new URLSearchParams({ ...filters, ...(extra || {}) });
    const text = search.toString();
    return text ? "?" + text : "";
  }

  async function api(path) {
    const headers = apiKey ? { "X-API-Key": apiKey } : {};
    const response = await fetch(path, { headers, cache: "no-store" });
    if (response.status === 401 || response.status === 403) {
      const body = await response.json().catch(() => ({}));
      askForKey(body.error || "this key may not read the dashboard");
      throw new Error("unauthorized");
    }
    return response;
  }

  function askForKey(message) {
    $("key-form").hidden = false;
    $("key-error").textContent = message || "";
    setStatus("closed", "needs a key");
    if (source) source.close();
    if (pollTimer) window.clearInterval(pollTimer);
    pollTimer = null;
  }

  function setStatus(state, text) {
    const status = $("stream-status");
    status.className = "status status-" + state;
    status.textContent = text;
  }

  function formatScore(score) {
    return score === null || score === undefined ? "–" : Number(score).toFixed(2);
  }

  function formatTime(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString();
  }

  function turnItem(turn) {
    const prediction = turn.prediction;
    const label = prediction ? prediction.emotion : null;
    const item = element("li", "turn " + (label ? "label-" + label : "turn-agent"));
    item.dataset.speaker = turn.speaker;
    if (label) item.dataset.label = label;
    item.append(element("span", "speaker", turn.speaker + ":"));
    item.append(element("span", "text", turn.text === null ? "(text hidden)" : turn.text));
    if (prediction) {
      item.append(element("span", "score", label + " · esc " + formatScore(prediction.escalate_score)));
    }
    return item;
  }

  function conversationItem(state) {
    const label = state.current_label;
    const item = element("li", "conversation" + (label ? " border-" + label : "") + (state.alert_active ? " alerting" : ""));
    item.tabIndex = 0;
    item.dataset.conversationId = state.conversation_id;
    item.dataset.label = label || "";
    item.dataset.alert = state.alert_active ? "true" : "false";
    item.addEventListener("click", () => openConversation(state.conversation_id));
    item.addEventListener("keydown", (event) => {
      if (event.key === "Enter") openConversation(state.conversation_id);
    });

    const row = element("div", "row");
    row.append(element("span", "id", state.conversation_id));
    if (state.alert_active) row.append(element("span", "alert-flag", "ALERT"));
    row.append(element("span", "chip label " + (label ? "label-" + label : ""), label || "no customer turn"));
    row.append(element("span", "trend trend-" + state.trend, TREND_SYMBOLS[state.trend] || state.trend));
    const risk = element("span", "risk");
    risk.title = "risk " + formatScore(state.risk);
    const bar = element("span");
    bar.style.width = Math.round(Math.min(1, Math.max(0, state.risk)) * 100) + "%";
    risk.append(bar);
    row.append(risk);
    row.append(element("span", "muted", "esc " + formatScore(state.escalation_score)));
    if (state.most_severe_label && state.most_severe_label !== label) {
      row.append(element("span", "muted", "worst: " + state.most_severe_label));
    }
    const where = [state.queue, state.team].filter(Boolean).join(" / ");
    if (where) row.append(element("span", "muted", where));
    item.append(row);
    const escalation = state.escalation;
    if (escalation && escalation.reasons.length) item.append(reasonChips(escalation.reasons, escalation.since_turn));

    const turns = element("ol", "turns");
    for (const turn of state.recent_turns.slice(-SHOWN_TURNS)) turns.append(turnItem(turn));
    item.append(turns);
    return item;
  }

  async function refreshConversations() {
    let response;
    try {
      response = await api("/v1/conversations" + query({ limit: "200" }));
    } catch (error) {
      return;
    }
    if (!response.ok) return;
    const data = await response.json();
    const list = $("conversations");
    list.replaceChildren(...data.conversations.map(conversationItem));
    $("conversation-count").textContent = data.count;
    $("no-conversations").hidden = data.count > 0;
    if (selectedId !== null) refreshDetail();
  }

  function queueRefresh() {
    // Several events in a burst cause one refresh.
    if (refreshQueued) return;
    refreshQueued = true;
    window.setTimeout(() => {
      refreshQueued = false;
      refreshConversations();
    }, 100);
  }

  // "persistent_anger (turn 4)": each escalation reason with the turn that set it off.
  function reasonsText(reasons, sinceTurn) {
    return (reasons || []).map((reason) => reason + " (turn " + (sinceTurn || {})[reason] + ")").join(", ");
  }

  function reasonChips(reasons, sinceTurn) {
    const chips = element("div", "reasons");
    for (const reason of reasons || []) {
      const chip = element("span", "chip reason-chip", reason + " · turn " + (sinceTurn || {})[reason]);
      chip.dataset.reason = reason;
      chips.append(chip);
    }
    return chips;
  }

  function alertItem(event) {
    const item = element("li", "alert-event kind-" + event.kind);
    item.dataset.eventId = event.id;
    item.dataset.kind = event.kind;
    item.dataset.conversationId = event.conversation_id;
    const head = element("div", "head");
    head.append(element("span", "kind", KIND_TITLES[event.kind] || event.kind));
    head.append(element("span", "conversation-id", event.conversation_id));
    if (event.label) head.append(element("span", "chip label-" + event.label, event.label));
    const reason = event.kind === "alert" ? event.reason + " · esc " + formatScore(event.score) : event.reason;
    head.append(element("span", "muted reason", reason));
    if (event.queue || event.team) head.append(element("span", "muted", [event.queue, event.team].filter(Boolean).join(" / ")));
    head.append(element("time", null, formatTime(event.time)));
    item.append(head);
    if (event.reasons && event.reasons.length) item.append(reasonChips(event.reasons, event.since_turn));
    if (event.kind === "alert" && event.message) item.append(element("div", "message", event.message));
    if (event.text) item.append(element("div", "text", "“" + event.text + "”"));
    if (event.turn_index !== null && event.turn_index !== undefined) {
      item.append(element("div", "muted", "turn " + event.turn_index));
    }
    item.addEventListener("click", () => openConversation(event.conversation_id));
    return item;
  }

  function showEvent(event, fresh) {
    if (seenEvents.has(event.id)) return;
    seenEvents.add(event.id);
    // Every conversation ends: only the ends of conversations that alerted belong in the feed.
    if (event.kind === "ended" && !event.alerts_raised) return;
    const list = $("alerts");
    const item = alertItem(event);
    if (fresh) item.classList.add("fresh");
    // Newest first, by event id (a replayed older event goes below newer ones).
    const after = Array.from(list.children).find((child) => Number(child.dataset.eventId) < event.id);
    list.insertBefore(item, after || null);
    while (list.children.length > MAX_ALERTS) list.lastElementChild.remove();
    $("alert-count").textContent = list.querySelectorAll(".kind-alert").length;
    $("no-alerts").hidden = list.children.length > 0;
  }

  function connectStream() {
    if (source) source.close();
    const extra = apiKey ? { key: apiKey } : {};
    source = new EventSource("/v1/alerts/stream" + query(extra));
    source.onopen = () => setStatus("live", "live");
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        setStatus("closed", "disconnected");
        // The stream refuses a bad key with 401/403; the next poll tells which and asks for a key.
        window.setTimeout(checkAccessThenReconnect, 3000);
      } else {
        setStatus("connecting", "reconnecting…");
      }
    };
    for (const kind of ["alert", "all_clear", "ended"]) {
      source.addEventListener(kind, (message) => {
        showEvent(JSON.parse(message.data), true);
        queueRefresh();
      });
    }
  }

  async function checkAccessThenReconnect() {
    try {
      const response = await api("/v1/alerts" + query({ limit: "1" }));
      if (response.ok) connectStream();
    } catch (error) {
      /* askForKey has been shown */
    }
  }

  async function loadRecentAlerts() {
    try {
      const response = await api("/v1/alerts" + query({ limit: "50" }));
      if (!response.ok) return;
      const data = await response.json();
      for (const event of data.events) showEvent(event, false);
    } catch (error) {
      /* unauthorized: the key form is shown */
    }
  }

  async function loadInfo() {
    try {
      const response = await api("/v1/info");
      if (!response.ok) return;
      const info = await response.json();
      $("model").textContent = "model " + info.model.name + " " + info.model.version;
    } catch (error) {
      /* shown by the key form */
    }
    const described = Object.entries(filters).map(([name, value]) => name + " " + value).join(", ");
    $("filters").textContent = described ? "showing " + described : "";
  }

  async function openConversation(conversationId) {
    selectedId = conversationId;
    await refreshDetail();
    $("detail").hidden = false;
    $("detail").scrollIntoView({ block: "nearest" });
  }

  async function refreshDetail() {
    const conversationId = selectedId;
    const title = $("detail-title");
    const stateList = $("detail-state");
    const turns = $("detail-turns");
    let response;
    try {
      response = await api("/v1/conversations/" + encodeURIComponent(conversationId));
    } catch (error) {
      return;
    }
    if (conversationId !== selectedId) return;
    title.textContent = "Conversation " + conversationId;
    if (response.status === 404) {
      title.textContent += " (ended)";
      return;
    }
    if (!response.ok) return;
    const state = (await response.json()).state;
    const facts = [
      ["label", state.current_label || "–"],
      ["most severe", state.most_severe_label || "–"],
      ["trend", state.trend],
      ["escalation score", formatScore(state.escalation_score)],
      ["why", state.escalation && state.escalation.reasons.length
        ? reasonsText(state.escalation.reasons, state.escalation.since_turn) : "–"],
      ["alert", state.alert_active ? "active" : "none"],
      ["alerts raised", state.alerts_raised],
      ["first escalation turn", state.first_escalation_turn === null ? "–" : state.first_escalation_turn],
      ["turns", state.turns + " (" + state.customer_turns + " customer)"],
      ["queue / team", [state.queue, state.team].filter(Boolean).join(" / ") || "–"],
    ];
    stateList.replaceChildren();
    for (const [name, value] of facts) {
      stateList.append(element("dt", null, name), element("dd", null, value));
    }
    turns.replaceChildren(...state.recent_turns.map(turnItem));
  }

  function start() {
    $("key-form").hidden = true;
    loadInfo();
    connectStream();
    loadRecentAlerts();
    refreshConversations();
    if (pollTimer) window.clearInterval(pollTimer);
    pollTimer = window.setInterval(refreshConversations, POLL_MS);
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    apiKey = $("key-input").value.trim();
    window.sessionStorage.setItem(KEY_STORAGE, apiKey);
    $("key-input").value = "";
    start();
  });
  $("detail-close").addEventListener("click", () => {
    selectedId = null;
    $("detail").hidden = true;
  });

  start();
})();
