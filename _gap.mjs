import ort from 'onnxruntime-node';
const [model, spin] = process.argv.slice(2);
const size = model.includes('640') ? 640 : 320;
const s = await ort.InferenceSession.create(model, { intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential', ...(spin === '0' ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}) });
const input = new Float32Array(3 * size * size).fill(0.45);
const run = async () => { const t0 = performance.now(); await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', input, [1, 3, size, size]) }); return performance.now() - t0; };
for (let i = 0; i < 3; i++) await run();
const busy = new Uint8Array(16 << 20);
const modes = {
  b2b: async () => run(),
  sleep20: async () => { await new Promise((r) => setTimeout(r, 20)); return run(); },
  touch20: async () => { const end = performance.now() + 20; let x = 0; while (performance.now() < end) for (let i = 0; i < busy.length; i += 64) x += busy[i]++; return run(); },
};
const res = {};
for (let round = 0; round < 6; round++) for (const [k, f] of Object.entries(modes)) { for (let i = 0; i < 6; i++) (res[k] ??= []).push(await f()); }
const med = (a) => { a.sort((x, y) => x - y); return a[a.length >> 1].toFixed(1); };
console.log(`${size} spin=${spin}: ` + Object.entries(res).map(([k, v]) => `${k} ${med(v)}`).join(', '));
