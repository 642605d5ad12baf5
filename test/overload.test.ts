import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildConstantModel, writeModel } from './helpers/onnx-builder.js';
import { INPUT, LABELS, RAW_BOXES, manifest, solidImage, startApp, tempDir, yolov8Output } from './helpers/fixtures.js';

interface Answer {
  status: number;
  code?: string;
  retryAfter: string | null;
}

test('overload over real sockets: 503 OVERLOADED and 504 DEADLINE_EXCEEDED with codes; /livez and in-deadline requests keep being served', async () => {
  const tmp = tempDir();
  // Each inference of the slow model takes hundreds of milliseconds on one thread.
  writeModel(
    tmp.dir,
    'slow',
    '1',
    buildConstantModel({ output: yolov8Output(), outputShape: [4 + LABELS.length, RAW_BOXES.length + 1], inputWidth: INPUT, inputHeight: INPUT, slow: true }),
    manifest({ format: 'yolov8' }),
  );
  const app = await startApp({ models_dir: tmp.dir, instances: 1, intra_op_threads: 1, max_batch_size: 1, max_queue: 3 });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const image = new Uint8Array(await solidImage(320, 240, 'jpeg'));
    const post = async (headers: Record<string, string> = {}, query = ''): Promise<Answer> => {
      const res = await fetch(`${base}/v1/detect${query}`, { method: 'POST', headers: { 'content-type': 'image/jpeg', ...headers }, body: image });
      const body = (await res.json()) as { error?: { code: string } };
      return { status: res.status, code: body.error?.code, retryAfter: res.headers.get('retry-after') };
    };

    // One running + 3 admitted fill the model; a short-deadline request cannot wait that long.
    const burst = Array.from({ length: 10 }, () => post());
    await new Promise((r) => setTimeout(r, 100));
    const livezStarted = performance.now();
    const livez = await fetch(`${base}/livez`);
    const livezMs = performance.now() - livezStarted;
    assert.equal(livez.status, 200);
    const answers = await Promise.all(burst);
    const ok = answers.filter((a) => a.status === 200);
    const shed = answers.filter((a) => a.status === 503);
    assert.ok(ok.length >= 1 && ok.length <= 4, `accepted ${ok.length}`);
    assert.equal(ok.length + shed.length, answers.length);
    for (const a of shed) {
      assert.equal(a.code, 'OVERLOADED');
      assert.equal(a.retryAfter, '1');
    }
    assert.ok(livezMs < 1000, `/livez took ${livezMs} ms under load`);

    // Deadline: queued behind a running inference with 50 ms to live.
    const running = post();
    await new Promise((r) => setTimeout(r, 50));
    const late = await post({ 'x-request-timeout-ms': '50' });
    assert.equal(late.status, 504);
    assert.equal(late.code, 'DEADLINE_EXCEEDED');
    assert.equal((await running).status, 200);
    const generous = await post({ 'x-request-timeout-ms': '60000' });
    assert.equal(generous.status, 200);
    const bad = await post({ 'x-request-timeout-ms': 'soon' });
    assert.equal(bad.status, 400);
    assert.equal(bad.code, 'INVALID_REQUEST');

    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, new RegExp(`sightline_rejected_total\\{reason="queue_full"\\} ${shed.length}`));
    assert.match(metrics, /sightline_rejected_total\{reason="deadline_exceeded"\} 1/);
    assert.match(metrics, /sightline_batch_size_count\{model="slow"\} \d+/);
    assert.match(metrics, /sightline_queue_depth\{queue="infer:slow:1"\} 0/);
  } finally {
    await app.close();
    tmp.cleanup();
  }
});
