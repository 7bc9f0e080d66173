// The live transcript's capture: the microphone's samples (the AudioContext runs at 16 kHz) as
// 16-bit PCM, posted to the page every 100 ms.
class Pcm16 extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buffer = new Int16Array(sampleRate / 10);
    this.filled = 0;
  }
  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    for (const x of input) {
      this.buffer[this.filled++] = Math.max(-1, Math.min(1, x)) * 0x7fff;
      if (this.filled === this.buffer.length) {
        this.port.postMessage(this.buffer.buffer, [this.buffer.buffer]);
        this.buffer = new Int16Array(sampleRate / 10);
        this.filled = 0;
      }
    }
    return true;
  }
}
registerProcessor("pcm16", Pcm16);
