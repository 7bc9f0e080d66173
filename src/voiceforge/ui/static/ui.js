// The backend log view of the web UI: GET /admin/logs/stream (Server-Sent Events) into
// #vf-logview. Lines and filters live here, so the panel survives Gradio re-rendering it
// (the language switch replaces its HTML).
(() => {
  const MAX_LINES = 2000;
  const S = { lines: [], source: null, level: "INFO", task: "", paused: false, state: "connecting", dropped: 0 };
  const view = () => document.querySelector("#vf-logview");
  const part = (root, name) => root.querySelector(`[data-vf=${name}]`);

  // state: connecting | live | reconnecting; the words come from the panel (data-*), in its language
  function setState(state) {
    S.state = state;
    const v = view();
    if (!v) return;
    v.dataset.state = state;
    const dropped = S.dropped ? ` (−${S.dropped})` : "";
    part(v, "state").textContent = (v.dataset[state] || state) + dropped;
  }

  function line(d) {
    const span = document.createElement("span");
    span.className = d.level;
    span.textContent = d.line + "\n";
    return span;
  }

  function append(d) {
    S.lines.push(d);
    if (S.lines.length > MAX_LINES) S.lines.shift();
    const v = view();
    if (!v) return;
    const pre = part(v, "lines");
    pre.appendChild(line(d));
    while (pre.childNodes.length > MAX_LINES) pre.removeChild(pre.firstChild);
    if (!S.paused) pre.scrollTop = pre.scrollHeight;
  }

  function connect() {
    if (S.source) S.source.close();
    const query = new URLSearchParams({ level: S.level, backlog: "200" });
    if (S.task) query.set("task", S.task);
    S.lines = [];
    const v = view();
    if (v) part(v, "lines").textContent = "";
    S.dropped = 0;
    setState("connecting");
    const source = new EventSource("/admin/logs/stream?" + query.toString());
    source.addEventListener("ready", () => setState("live"));
    source.addEventListener("log", (ev) => append(JSON.parse(ev.data)));
    source.addEventListener("dropped", (ev) => {
      S.dropped += JSON.parse(ev.data).count;
      setState("live");
    });
    source.onerror = () => setState("reconnecting");
    S.source = source;
  }

  function bind(v) {
    v.dataset.bound = "1";
    const pre = part(v, "lines");
    pre.textContent = "";
    S.lines.forEach((d) => pre.appendChild(line(d)));
    pre.scrollTop = pre.scrollHeight;
    setState(S.state);
    const level = part(v, "level"), task = part(v, "task"), pause = part(v, "pause");
    level.value = S.level;
    task.value = S.task;
    pause.checked = S.paused;
    level.addEventListener("change", () => { S.level = level.value; connect(); });
    task.addEventListener("change", () => { S.task = task.value.trim(); connect(); });
    pause.addEventListener("change", () => {
      S.paused = pause.checked;
      if (!S.paused) pre.scrollTop = pre.scrollHeight;
    });
    part(v, "clear").addEventListener("click", () => { S.lines = []; pre.textContent = ""; });
    if (!S.source) connect();
  }

  // Gradio renders the panel when the Backend tab first opens, and again on a language switch.
  setInterval(() => {
    const v = view();
    if (v && !v.dataset.bound && v.offsetParent !== null) bind(v);
  }, 200);
})();

// The streaming preview: each sentence arrives in #vf-live as a WAV data URL; they are played back
// to back with Web Audio, without waiting for the whole take.
(() => {
  const L = { context: null, next: 0, seen: new Set(), chain: Promise.resolve() };
  window.vfLivePlayed = 0;
  const context = () => (L.context = L.context || new AudioContext());
  // Browsers let audio start only after a click: open the context on the Generate click.
  document.addEventListener("click", (ev) => {
    if (ev.target.closest && ev.target.closest("#vf-generate")) context().resume();
  }, true);

  async function play(src) {
    const ctx = context();
    const buffer = await ctx.decodeAudioData(await (await fetch(src)).arrayBuffer());
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    const at = Math.max(ctx.currentTime + 0.05, L.next);
    source.start(at);
    L.next = at + buffer.duration;
    window.vfLivePlayed += 1;
  }

  setInterval(() => {
    document.querySelectorAll("#vf-live .vf-chunk").forEach((el) => {
      if (L.seen.has(el.dataset.id)) return;
      L.seen.add(el.dataset.id);
      L.chain = L.chain.then(() => play(el.dataset.src)).catch(() => {});
    });
  }, 100);
})();
