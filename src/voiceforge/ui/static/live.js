// Live transcript for the phone page: the microphone as 16 kHz PCM over WS /v1/audio/live,
// partial text in grey as it forms, each final line below. A dropped connection comes back by
// itself with the session token: the server says how much audio it has, and the page sends the
// rest from its copy, so no word is lost or shown twice.
(() => {
  const RATE = 16000, RETRIES = 8;
  const LABEL = {
    zh: { start: "● 实时转写", stop: "■ 停止转写", reconnecting: "连接中断，正在重连…", failed: "实时转写失败：" },
    en: { start: "● Live transcript", stop: "■ Stop transcript", reconnecting: "Connection lost; reconnecting…",
          failed: "Live transcript failed: " },
  };
  const $ = (id) => document.getElementById(id);
  const lang = () => (document.documentElement.lang === "zh" ? "zh" : "en");
  const live = {
    socket: null, ready: false, token: null, lastSeq: 0, audio: [], sampleCount: 0, running: false, retries: 0,
    context: null, stream: null,
  };
  window.voiceforgeLive = live;  // the browser test drops the socket through this

  function label() { $("live").textContent = LABEL[lang()][live.running ? "stop" : "start"]; }
  function note(text, isError = false) {
    $("live-status").textContent = text;
    $("live-status").className = isError ? "error" : "";
  }

  function url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({ sample_rate: RATE });
    const key = $("key").value.trim();
    if (key) query.set("api_key", key);
    if (live.token) { query.set("session", live.token); query.set("last_seq", live.lastSeq); }
    return `${scheme}//${location.host}/v1/audio/live?${query}`;
  }

  function sendFrom(offset) {  // every sample from `offset` on, from the page's own copy
    let at = 0;
    for (const chunk of live.audio) {
      const end = at + chunk.length;
      if (end > offset) live.socket.send(chunk.subarray(Math.max(0, offset - at)));
      at = end;
    }
  }

  function connect() {
    const socket = new WebSocket(url());
    socket.binaryType = "arraybuffer";
    live.socket = socket;
    live.ready = false;  // until the server says how much it has, nothing new is sent
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "session") {
        live.token = event.session;
        live.retries = 0;
        live.ready = true;
        note("");
        sendFrom(event.received);
      } else if (event.type === "partial") {
        $("partial").textContent = event.text;
      } else if (event.type === "final" && event.seq > live.lastSeq) {
        live.lastSeq = event.seq;
        const line = document.createElement("p");
        line.textContent = event.text;
        line.dataset.seq = event.seq;
        $("finals").appendChild(line);
        $("partial").textContent = "";
      } else if (event.type === "error") {
        note(LABEL[lang()].failed + event.message, true);
        live.token = null;
        stop(false);
      } else if (event.type === "done") {
        live.token = null;
        socket.close(1000);
      }
    };
    socket.onclose = () => {
      live.ready = false;
      if (live.socket !== socket || !live.running || !live.token) return;
      if (live.retries++ >= RETRIES) { note(LABEL[lang()].failed + "offline", true); stop(false); return; }
      note(LABEL[lang()].reconnecting);
      setTimeout(connect, Math.min(8000, 250 * 2 ** live.retries));
    };
  }

  async function start() {
    try {
      live.stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
    } catch (e) {
      note(LABEL[lang()].failed + (e.message || e.name), true);
      return;
    }
    live.context = new AudioContext({ sampleRate: RATE });
    await live.context.audioWorklet.addModule("/m/pcm-worklet.js");
    const capture = new AudioWorkletNode(live.context, "pcm16");
    capture.port.onmessage = (message) => {
      const chunk = new Int16Array(message.data);
      live.audio.push(chunk);
      live.sampleCount += chunk.length;
      if (live.ready && live.socket.readyState === WebSocket.OPEN) live.socket.send(chunk);
    };
    live.context.createMediaStreamSource(live.stream).connect(capture);
    Object.assign(live, { running: true, token: null, lastSeq: 0, audio: [], sampleCount: 0, retries: 0 });
    $("finals").textContent = "";
    $("partial").textContent = "";
    label();
    connect();
  }

  function stop(finish = true) {
    live.running = false;
    if (live.stream) live.stream.getTracks().forEach((t) => t.stop());
    if (live.context) live.context.close();
    live.stream = live.context = null;
    if (finish && live.socket && live.socket.readyState === WebSocket.OPEN) {
      live.socket.send(JSON.stringify({ type: "end" }));  // the server sends the last final, then done
    }
    label();
  }

  $("live").onclick = () => (live.running ? stop() : start());
  $("lang").addEventListener("click", label);
  label();
})();
