// The live execution page: draws the graph, streams the log over /ws (session auth), acks
// what it has shown, and reconnects with after_seq so nothing is lost or repeated.
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var MAX_LOG_LINES = 5000;
  var TERMINAL = { succeeded: true, failed: true, cancelled: true };

  var config = document.getElementById("live-config").dataset;
  var state = JSON.parse(document.getElementById("live-state").textContent);
  var executionId = config.executionId;

  var lastSeq = 0;
  var shownLines = 0;
  var complete = TERMINAL[state.execution.status] === true;
  var socket = null;
  var reconnectDelay = 1000;
  var refreshTimer = null;
  var tickTimer = null;
  var nodeElements = {};

  function el(id) {
    return document.getElementById(id);
  }

  function svg(name, attrs, parent) {
    var node = document.createElementNS(SVG_NS, name);
    Object.keys(attrs).forEach(function (key) {
      node.setAttribute(key, String(attrs[key]));
    });
    if (parent) parent.appendChild(node);
    return node;
  }

  function formatDuration(ms) {
    if (ms === null || ms === undefined) return "—";
    if (ms < 1000) return ms + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
    var minutes = Math.floor(ms / 60000);
    return minutes + " min " + Math.round((ms % 60000) / 1000) + " s";
  }

  function formatTime(iso) {
    if (!iso) return "—";
    var date = new Date(iso);
    if (isNaN(date.getTime())) return iso;
    return date.toLocaleString();
  }

  // --- graph -------------------------------------------------------------------------------

  function drawGraph() {
    var layout = state.layout;
    var root = el("graph");
    // Scales down to fit the pane (never up), keeping its proportions.
    root.setAttribute("viewBox", "0 0 " + layout.width + " " + layout.height);
    root.setAttribute("preserveAspectRatio", "xMinYMin meet");
    root.style.maxWidth = layout.width + "px";
    var defs = svg("defs", {}, root);
    var marker = svg(
      "marker",
      { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
      defs
    );
    svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#a3abba" }, marker);

    var placed = {};
    layout.nodes.forEach(function (node) {
      placed[node.id] = node;
    });
    var edges = svg("g", { class: "edges" }, root);
    layout.edges.forEach(function (edge) {
      var a = placed[edge.source];
      var b = placed[edge.target];
      var x1 = a.x + a.width;
      var y1 = a.y + a.height / 2;
      var x2 = b.x;
      var y2 = b.y + b.height / 2;
      var bend = Math.max(30, (x2 - x1) / 2);
      svg(
        "path",
        {
          class: "edge",
          d: "M " + x1 + " " + y1 + " C " + (x1 + bend) + " " + y1 + ", " + (x2 - bend) + " " + y2 + ", " + x2 + " " + y2,
          "marker-end": "url(#arrow)",
          "data-source": edge.source,
          "data-target": edge.target,
        },
        edges
      );
      if (edge.branch) {
        var label = svg("text", { class: "edge-label", x: x1 + 8, y: y1 - 6 }, edges);
        label.textContent = edge.branch;
      }
    });

    var nodes = svg("g", { class: "nodes" }, root);
    layout.nodes.forEach(function (node) {
      var group = svg(
        "g",
        { class: "node state-pending", "data-node-id": node.id, "data-state": "pending", transform: "translate(" + node.x + "," + node.y + ")" },
        nodes
      );
      svg("rect", { width: node.width, height: node.height, rx: 8, ry: 8 }, group);
      svg("circle", { class: "dot", cx: 14, cy: 18, r: 5 }, group);
      var name = svg("text", { class: "name", x: 26, y: 22 }, group);
      name.textContent = node.id.length > 20 ? node.id.slice(0, 19) + "…" : node.id;
      var title = svg("title", {}, group);
      title.textContent = node.id + " (" + node.type + ")";
      var meta = svg("text", { class: "meta", x: 12, y: 40 }, group);
      var timing = svg("text", { class: "meta timing", x: 12, y: 55 }, group);
      nodeElements[node.id] = { group: group, meta: meta, timing: timing, type: node.type };
    });
  }

  function setNodeState(nodeId, status) {
    var node = nodeElements[nodeId];
    if (!node || !status) return;
    node.group.setAttribute("class", "node state-" + status);
    node.group.setAttribute("data-state", status);
  }

  function renderNode(run) {
    var node = nodeElements[run.node_id];
    if (!node) return;
    setNodeState(run.node_id, run.status);
    node.group.setAttribute("data-attempts", run.attempts);
    var meta = [node.type, run.status];
    if (run.cached) meta.push("cached");
    node.meta.textContent = meta.join(" · ");
    var timing = [];
    if (run.attempts > 0) timing.push(run.attempts === 1 ? "1 attempt" : run.attempts + " attempts");
    if (run.duration_ms !== null && run.duration_ms !== undefined) {
      timing.push(formatDuration(run.duration_ms));
    } else if (run.started_at && (run.status === "running" || run.status === "waiting")) {
      timing.push(formatDuration(Date.now() - new Date(run.started_at).getTime()) + " so far");
    }
    if (run.error && run.error.code) timing.push(run.error.code);
    node.timing.textContent = timing.join(" · ");
  }

  function renderNodes() {
    state.nodes.forEach(renderNode);
  }

  function updateNodeStatus(nodeId, status) {
    // The socket says what changed at once; attempts and timings follow from refreshState().
    state.nodes.forEach(function (run) {
      if (run.node_id === nodeId && status) {
        run.status = status;
        renderNode(run);
      }
    });
  }

  // --- execution header --------------------------------------------------------------------

  function setStatus(status) {
    var badge = el("execution-status");
    badge.textContent = status;
    badge.className = "badge state-" + status;
    badge.setAttribute("data-status", status);
    state.execution.status = status;
  }

  function renderExecution() {
    var execution = state.execution;
    setStatus(execution.status);
    el("execution-started").textContent = formatTime(execution.started_at);
    el("execution-finished").textContent = formatTime(execution.finished_at);
    el("execution-created").textContent = formatTime(execution.created_at);
    var duration = execution.duration_ms;
    if ((duration === null || duration === undefined) && execution.started_at && !TERMINAL[execution.status]) {
      el("execution-duration").textContent = formatDuration(Date.now() - new Date(execution.started_at).getTime()) + " so far";
    } else {
      el("execution-duration").textContent = formatDuration(duration);
    }
    var error = el("execution-error");
    if (execution.error && execution.error.message) {
      error.hidden = false;
      error.textContent = execution.error.code + ": " + execution.error.message + (execution.error.node_id ? " (node " + execution.error.node_id + ")" : "");
    } else {
      error.hidden = true;
    }
  }

  function render() {
    renderExecution();
    renderNodes();
  }

  function refreshState() {
    if (refreshTimer !== null) return;
    // Bursts of status messages collapse into one request.
    refreshTimer = window.setTimeout(function () {
      refreshTimer = null;
      fetch(config.stateUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("state " + response.status);
          return response.json();
        })
        .then(function (fresh) {
          state.execution = fresh.execution;
          state.nodes = fresh.nodes;
          render();
        })
        .catch(function () {
          /* the next status message or reconnect refreshes again */
        });
    }, 250);
  }

  // --- log ---------------------------------------------------------------------------------

  function appendLines(lines) {
    var pane = el("log");
    var atBottom = pane.scrollHeight - pane.scrollTop - pane.clientHeight < 40;
    var fragment = document.createDocumentFragment();
    lines.forEach(function (line) {
      if (line.seq <= lastSeq) return;
      lastSeq = line.seq;
      var row = document.createElement("div");
      row.className = "log-line level-" + (line.level || "info");
      row.setAttribute("data-seq", line.seq);
      var cells = [
        ["seq", "#" + line.seq],
        ["ts", line.ts ? new Date(line.ts).toLocaleTimeString() : ""],
        ["level", line.level || ""],
        ["node", line.node_id || ""],
        ["message", line.message || ""],
      ];
      cells.forEach(function (cell) {
        var span = document.createElement("span");
        span.className = cell[0];
        span.textContent = cell[1];
        row.appendChild(span);
      });
      if (line.data !== null && line.data !== undefined) row.title = JSON.stringify(line.data);
      fragment.appendChild(row);
      shownLines += 1;
    });
    pane.appendChild(fragment);
    // The page keeps the newest lines only, so a huge run cannot exhaust the tab.
    while (pane.childElementCount > MAX_LOG_LINES) pane.removeChild(pane.firstElementChild);
    el("log-count").textContent = shownLines + (shownLines === 1 ? " line" : " lines");
    if (atBottom) pane.scrollTop = pane.scrollHeight;
  }

  function note(text) {
    var row = document.createElement("div");
    row.className = "log-note";
    row.textContent = text;
    el("log").appendChild(row);
  }

  // --- socket ------------------------------------------------------------------------------

  function setConnection(label, stateName) {
    var node = el("connection");
    node.textContent = label;
    node.setAttribute("data-state", stateName);
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function onMessage(event) {
    var message;
    try {
      message = JSON.parse(event.data);
    } catch (error) {
      return;
    }
    switch (message.type) {
      case "connected":
        reconnectDelay = 1000;
        setConnection("live", "live");
        send({ type: "subscribe:execution", execution_id: executionId, after_seq: lastSeq });
        break;
      case "subscribed":
        refreshState();
        break;
      case "execution:logs":
        if (message.execution_id !== executionId) break;
        appendLines(message.lines || []);
        send({ type: "ack", execution_id: executionId, seq: lastSeq });
        break;
      case "execution:status":
        if (message.execution_id !== executionId) break;
        if (message.node_id) {
          updateNodeStatus(message.node_id, message.node_status);
        } else if (message.status) {
          setStatus(message.status);
        }
        refreshState();
        break;
      case "execution:complete":
        if (message.execution_id !== executionId) break;
        complete = true;
        setStatus(message.status);
        state.execution.duration_ms = message.duration_ms;
        el("execution-duration").textContent = formatDuration(message.duration_ms);
        refreshState();
        break;
      case "error":
        note("server: " + message.code + " — " + message.message);
        break;
      default:
        break;
    }
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    setConnection("connecting…", "connecting");
    socket = new WebSocket(scheme + window.location.host + config.wsPath, ["autoflow.v1"]);
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", function (event) {
      socket = null;
      if (event.code === 4401 || event.code === 4403) {
        setConnection("signed out — reload to sign in", "closed");
        return;
      }
      setConnection("reconnecting…", "closed");
      window.setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 10000);
    });
  }

  function tick() {
    if (!TERMINAL[state.execution.status]) render();
  }

  drawGraph();
  render();
  connect();
  tickTimer = window.setInterval(tick, 1000);
  window.addEventListener("beforeunload", function () {
    window.clearInterval(tickTimer);
    if (socket) socket.close(1000);
  });
  window.autoflowLive = {
    lastSeq: function () {
      return lastSeq;
    },
    complete: function () {
      return complete;
    },
  };
})();
