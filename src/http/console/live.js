// Live updates through the native subscribe socket: the view shown follows
// its configs (each with its secret, which the admin API shows), and is
// told when one changes, wherever the change was made. One socket at a time:
// a new view's follow closes the last one's.

let current = null;

export function follow(configs, onChange) {
  stop();
  // A viewer is never shown a config's secret, so cannot follow it.
  configs = configs.filter((c) => c.secret);
  if (configs.length === 0) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/v1/subscribe`);
  current = socket;
  socket.addEventListener("open", () => {
    for (const c of configs) {
      socket.send(JSON.stringify({ type: "subscribe", config_id: c.id, secret: c.secret, revision: c.revision }));
    }
  });
  socket.addEventListener("message", (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.type === "update" && current === socket) onChange(message.config_id, message.revision);
  });
  // A dropped socket (a node restarting, say) is opened again while the view lasts.
  socket.addEventListener("close", () => {
    if (current === socket) setTimeout(() => current === socket && follow(configs, onChange), 1000);
  });
}

export function stop() {
  const socket = current;
  current = null;
  socket?.close();
}
