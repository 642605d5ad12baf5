const ort = require('onnxruntime-node');
const fs = require('fs');
(async () => {
  const [model, dir] = process.argv.slice(2);
  const shapes = JSON.parse(fs.readFileSync(dir + '/shapes.json'));
  const inp = new Float32Array(fs.readFileSync(dir + '/input.bin').buffer.slice(0));
  const ref = new Float32Array(fs.readFileSync(dir + '/output.bin').buffer.slice(0));
  const s = await ort.InferenceSession.create(model);
  console.log('inputs', s.inputNames, 'outputs', s.outputNames);
  for (const n of [2, 1]) {
    const sz = (inp.length / 2) * n;
    const t = new ort.Tensor('float32', inp.slice(0, sz), [n, ...shapes.input_shape.slice(1)]);
    const t0 = Date.now();
    const r = await s.run({ images: t });
    const o = r.output0;
    let md = 0,
      mx = 0;
    let ms = 0;
    const A = o.dims[2];
    for (let i = 0; i < o.data.length; i++) {
      const d = Math.abs(o.data[i] - ref[i]);
      md = Math.max(md, d);
      mx = Math.max(mx, Math.abs(ref[i]));
      if (Math.floor(i / A) % 8 >= 4) ms = Math.max(ms, d);
    }
    console.log('score rows max diff', ms);
    console.log('batch', n, 'dims', o.dims, 'max abs diff', md, 'max |ref|', mx, 'ms', Date.now() - t0);
  }
})();
