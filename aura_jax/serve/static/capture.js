// AudioWorklet: microphone samples at the context's rate → 16 kHz float32 chunks of 100 ms, posted
// to the page. The page asks for a 16 kHz context (the browser then resamples); where it gets another
// rate, each output sample is the mean of the input samples it covers (a box filter against aliasing).
class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / 16000;
    this.out = new Float32Array(1600);
    this.n = 0;
    this.acc = 0; this.count = 0; this.phase = 0;
    this.port.onmessage = (e) => { if (e.data === "flush") this.post(true); };
  }
  push(v) {
    this.out[this.n++] = v;
    if (this.n === this.out.length) this.post(false);
  }
  post(last) {
    const chunk = this.out.slice(0, this.n);
    this.n = 0;
    this.port.postMessage({ samples: chunk, last }, [chunk.buffer]);
  }
  process(inputs) {
    const x = inputs[0] && inputs[0][0];
    if (!x) return true;
    if (this.ratio === 1) {
      for (let i = 0; i < x.length; i++) this.push(x[i]);
    } else {
      for (let i = 0; i < x.length; i++) {
        this.acc += x[i]; this.count++; this.phase += 1;
        if (this.phase >= this.ratio) { this.push(this.acc / this.count); this.acc = 0; this.count = 0; this.phase -= this.ratio; }
      }
    }
    return true;
  }
}
registerProcessor("capture", Capture);
