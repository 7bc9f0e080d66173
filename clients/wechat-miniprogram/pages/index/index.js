// Record ≤ 15 s as a 16 kHz mono WAV, send it base64 to POST /tts, play audio_url.
// The same steps as the tested mobile web page (/m) of voiceforge.
const { BASE_URL, MAX_RECORD_MS, MIN_RECORD_MS } = require("../../config.js");

const STYLES = [
  { label: "默认", instruct: "" },
  { label: "开心", instruct: "用开心的语气说" },
  { label: "悲伤", instruct: "用悲伤的语气说" },
  { label: "温柔", instruct: "用温柔的语气说" },
  { label: "慢一点", instruct: "请慢一点说" },
  { label: "快一点", instruct: "请快一点说" },
];

const recorder = wx.getRecorderManager();
const player = wx.createInnerAudioContext();

Page({
  data: {
    recording: false, seconds: "0.0", text: "", styles: STYLES, styleIndex: 0,
    busy: false, status: "", error: false, apiKey: wx.getStorageSync("voiceforge.key") || "",
  },
  promptBase64: null,
  startedAt: 0,
  timer: null,

  onLoad() {
    recorder.onStop((res) => this.recorded(res));
    recorder.onError((e) => this.fail("无法录音：" + e.errMsg));
  },

  toggleRecord() {
    if (this.data.recording) {
      recorder.stop();
      return;
    }
    this.promptBase64 = null;
    // WAV, 16 kHz, mono: what the server checks prompts against (at least 16 kHz).
    recorder.start({ duration: MAX_RECORD_MS, sampleRate: 16000, numberOfChannels: 1, format: "wav" });
    this.startedAt = Date.now();
    this.timer = setInterval(() => {
      this.setData({ seconds: ((Date.now() - this.startedAt) / 1000).toFixed(1) });
    }, 100);
    this.setData({ recording: true, status: "", error: false });
  },

  recorded(res) {
    clearInterval(this.timer);
    this.setData({ recording: false });
    if (res.duration < MIN_RECORD_MS) {
      this.fail("录音太短，请至少录 3 秒。");
      return;
    }
    wx.getFileSystemManager().readFile({
      filePath: res.tempFilePath,
      encoding: "base64",
      success: (file) => { this.promptBase64 = file.data; },
      fail: (e) => this.fail("读取录音失败：" + e.errMsg),
    });
  },

  onText(e) { this.setData({ text: e.detail.value }); },
  onStyle(e) { this.setData({ styleIndex: Number(e.detail.value) }); },
  onKey(e) {
    this.setData({ apiKey: e.detail.value.trim() });
    wx.setStorageSync("voiceforge.key", this.data.apiKey);
  },

  send() {
    const text = this.data.text.trim();
    if (!text) {
      this.fail("请输入要合成的文字。");
      return;
    }
    const instruct = STYLES[this.data.styleIndex].instruct;
    const body = { text, format: "wav", mode: instruct ? "instruct" : this.promptBase64 ? "zero_shot" : "preset" };
    if (this.promptBase64) body.prompt_audio = this.promptBase64;
    if (instruct) body.instruct = instruct;
    const header = { "content-type": "application/json" };
    if (this.data.apiKey) header["X-API-Key"] = this.data.apiKey;
    this.setData({ busy: true, status: "正在生成…", error: false });
    wx.request({
      url: BASE_URL + "/tts",
      method: "POST",
      header,
      data: body,
      timeout: 120000,
      success: (res) => {
        const data = res.data || {};
        if (res.statusCode !== 200 || !data.success) {
          this.fail(`生成失败（${res.statusCode}）：${data.error || "未知错误"}`);
          return;
        }
        player.src = data.audio_url;  // signed when the server requires keys; plays without one
        player.play();
        this.setData({ status: `完成，${data.duration.toFixed(1)} 秒音频` });
      },
      fail: () => this.fail("网络错误，请检查连接后重试。"),
      complete: () => this.setData({ busy: false }),
    });
  },

  fail(message) {
    this.setData({ status: message, error: true, busy: false });
  },
});
