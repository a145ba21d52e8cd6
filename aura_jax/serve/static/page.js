// The voice page: microphone (getUserMedia → AudioWorklet capture.js, at the audio context's rate: 16 kHz
// where the browser gives it, else the server resamples) or the bundled example question, streamed to
// /v1/stream as 16-bit PCM while it is heard; the answers stream back token by
// token, AuRA's and (when the server runs one) the cascade's, each with its time to first token.
"use strict";
const $ = (id) => document.getElementById(id);
const RATE = 16000;  // asked of the audio context: what the model hears, so nothing needs resampling
let ws = null, mic = null, endSentAt = 0, firstSeen = {}, sendRate = RATE;

function setState(state, message) {
  document.body.dataset.state = state;
  if (message !== undefined) $("status").textContent = message;
  const busy = state === "listening" || state === "answering" || state === "connecting";
  $("talk").disabled = state === "answering" || state === "connecting" || state === "playing";
  $("example").disabled = busy || state === "playing";
  $("talk").textContent = state === "listening" ? "Stop — I have asked" : "Start talking";
}

function clearAnswers() {
  for (const id of ["aura-text", "aura-timing", "cascade-text", "cascade-timing", "cascade-transcript"]) $(id).textContent = "";
  $("heard").textContent = "0.0";
  firstSeen = {};
}

function toInt16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32768)));
  return out;
}

let heardSamples = 0;
function sendSamples(samples) {
  if (!ws || ws.readyState !== WebSocket.OPEN || samples.length === 0) return;
  ws.send(toInt16(samples).buffer);
  heardSamples += samples.length;
  $("heard").textContent = (heardSamples / sendRate).toFixed(1);
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  $("level").value = Math.min(1, Math.sqrt(sum / samples.length) * 4);
}

function sendEnd() {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(JSON.stringify({ type: "end" }));
  endSentAt = performance.now();
  $("level").value = 0;
  setState("answering", "Answering…");
}

function timingLine(system, t) {
  const ms = (s) => `${Math.round(s * 1000)} ms`;
  const since = system === "aura" ? "after the end of speech" : "after the cascade started";
  const page = firstSeen[system] !== undefined ? ` (this page saw it at ${Math.round(firstSeen[system])} ms)` : "";
  const rate = t.tokens_per_s ? ` · ${t.tokens_per_s} tokens/s` : "";
  return `first token ${ms(t.first_token_s)} ${since}${system === "aura" ? page : ""}${rate} · ${t.tokens} tokens · heard ${t.audio_s} s`;
}

function connect(rate) {
  sendRate = Math.round(rate);
  return new Promise((resolve, reject) => {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/stream`;
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => socket.send(JSON.stringify({ type: "start", sample_rate: sendRate, format: "s16le",
                                                       cascade: $("use-cascade").checked && !$("use-cascade").disabled }));
    socket.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === "ready") resolve(socket);
      else if (m.type === "token") {
        if (firstSeen[m.system] === undefined) firstSeen[m.system] = performance.now() - endSentAt;
        $(`${m.system}-text`).textContent += m.text;
      } else if (m.type === "transcript") $("cascade-transcript").textContent = `“${m.text}”`;
      else if (m.type === "answer") {
        $(`${m.system}-text`).textContent = m.text;
        $(`${m.system}-timing`).textContent = timingLine(m.system, m.timing);
      } else if (m.type === "done") { setState("done", "Done. Ask again?"); socket.close(); }
      else if (m.type === "error") { setState("error", `Error: ${m.message}`); stopMic(false); reject(new Error(m.message)); }
    };
    socket.onerror = () => { setState("error", "Error: the connection to the server failed"); reject(new Error("socket")); };
    socket.onclose = (e) => { if (document.body.dataset.state === "listening") { setState("error", `Error: the server closed the stream (${e.code})`); stopMic(false); } };
  });
}

async function startMic() {
  clearAnswers(); heardSamples = 0;
  setState("connecting", "Connecting…");
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false,
                                                                         noiseSuppression: false, autoGainControl: false } });
    const ctx = new AudioContext({ sampleRate: RATE });
    mic = { stream, ctx };
    await ctx.audioWorklet.addModule("/static/capture.js");
    ws = await connect(ctx.sampleRate);
    const node = new AudioWorkletNode(ctx, "capture");
    const source = ctx.createMediaStreamSource(stream);
    const mute = ctx.createGain(); mute.gain.value = 0;  // keeps the graph pulling samples through the worklet
    source.connect(node); node.connect(mute); mute.connect(ctx.destination);
    node.port.onmessage = (e) => { sendSamples(e.data.samples); if (e.data.last) { sendEnd(); release(); } };
    mic = { stream, ctx, node, source };
    setState("listening", `Listening (at ${ctx.sampleRate} Hz${ctx.sampleRate === RATE ? "" : "; the server resamples to 16 kHz"})… ask your question, then press Stop.`);
  } catch (err) {
    if (document.body.dataset.state !== "error") setState("error", `Error: ${err.message}`);
    stopMic(false);
  }
}

function release() {
  if (!mic) return;
  if (mic.source) { mic.source.disconnect(); mic.node.disconnect(); }
  mic.stream.getTracks().forEach((t) => t.stop());
  mic.ctx.close();
  mic = null;
}

function stopMic(flush = true) {
  if (mic && flush) mic.node.port.postMessage("flush");  // the worklet posts its last samples, then we send "end"
  else release();
}

async function playExample() {
  clearAnswers(); heardSamples = 0;
  setState("connecting", "Connecting…");
  try {
    const ctx = new AudioContext({ sampleRate: RATE });
    const wav = await (await fetch("/static/example.wav")).arrayBuffer();
    const buffer = await ctx.decodeAudioData(wav);  // at the context's rate
    const samples = buffer.getChannelData(0), rate = buffer.sampleRate;
    ws = await connect(rate);
    const play = ctx.createBufferSource(); play.buffer = buffer; play.connect(ctx.destination); play.start();
    setState("playing", "Playing the example question, streaming it as it plays…");
    const step = Math.round(rate / 10), start = performance.now();
    for (let i = 0; i < samples.length; i += step) {  // 100 ms pieces, each sent when it has been heard
      const wait = start + ((Math.min(i + step, samples.length)) / rate) * 1000 - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      sendSamples(samples.subarray(i, i + step));
    }
    sendEnd();
    ctx.close();
  } catch (err) {
    if (document.body.dataset.state !== "error") setState("error", `Error: ${err.message}`);
  }
}

async function init() {
  try {
    const h = await (await fetch("/health")).json();
    $("model").textContent = `${h.model}${h.cascade ? " · cascade: " + h.cascade : (h.cascade_error ? " · " + h.cascade_error : " · no cascade")} · up to ${h.limits.max_audio_seconds} s per question`;
    if (!h.cascade) { $("use-cascade").checked = false; $("use-cascade").disabled = true; $("cascade").classList.add("off"); }
    $("talk").onclick = () => (document.body.dataset.state === "listening" ? stopMic(true) : startMic());
    $("example").onclick = playExample;
    setState("idle", navigator.mediaDevices ? "Press Start talking and ask a question, or play the example." :
                                              "No microphone access here (the page needs 127.0.0.1 or https); play the example.");
    if (!navigator.mediaDevices) $("talk").disabled = true;
  } catch (err) {
    setState("error", `Error: the server did not answer (${err.message})`);
  }
}
init();
