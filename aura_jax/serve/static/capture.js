// AudioWorklet: microphone samples at the context's rate → float32 chunks of 100 ms, posted to the page.
// The page asks for a 16 kHz context (the browser then resamples); where it gets another rate, the page
// streams that rate and the server resamples (soxr), so no filter is written here.
class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.out = new Float32Array(Math.round(sampleRate / 10));
    this.n = 0;
    this.port.onmessage = (e) => { if (e.data === "flush") this.post(true); };
  }
  post(last) {
    const chunk = this.out.slice(0, this.n);
    this.n = 0;
    this.port.postMessage({ samples: chunk, last }, [chunk.buffer]);
  }
  process(inputs) {
    const x = inputs[0] && inputs[0][0];
    if (!x) return true;
    for (let i = 0; i < x.length; i++) {
      this.out[this.n++] = x[i];
      if (this.n === this.out.length) this.post(false);
    }
    return true;
  }
}
registerProcessor("capture", Capture);
