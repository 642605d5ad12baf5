import type { Detection, Verdict } from '../protocol/results.js';
import type { Metrics } from '../metrics/metrics.js';

/** Boxes of the same label overlapping at least this much count as the same finding. */
const MATCH_IOU = 0.5;

function iou(a: Detection['box'], b: Detection['box']): number {
  const w = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
  const h = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  const area = (r: Detection['box']) => (r.x2 - r.x1) * (r.y2 - r.y1);
  return inter / (area(a) + area(b) - inter);
}

/**
 * Box-level agreement of two answers on one image: boxes matched greedily (highest
 * score first, same label, IoU ≥ 0.5), × 2 ÷ the boxes of both; 1 when neither
 * found anything. It is an F1 score with one answer taken as the truth.
 */
export function boxAgreement(primary: readonly Detection[], shadow: readonly Detection[]): number {
  if (primary.length === 0 && shadow.length === 0) return 1;
  const free = [...shadow].sort((a, b) => b.score - a.score);
  let matched = 0;
  for (const p of [...primary].sort((a, b) => b.score - a.score)) {
    let best = -1;
    let bestIou = MATCH_IOU;
    for (const [i, s] of free.entries()) {
      if (s.label !== p.label) continue;
      const overlap = iou(p.box, s.box);
      if (overlap >= bestIou) {
        best = i;
        bestIou = overlap;
      }
    }
    if (best >= 0) {
      free.splice(best, 1);
      matched++;
    }
  }
  return (2 * matched) / (primary.length + shadow.length);
}

/**
 * Running agreement of each shadowed version with the answers, exported as
 * gauges (since this process began shadowing it) and a counter by outcome, which
 * Prometheus can rate over any window.
 */
export class ShadowRecorder {
  private readonly totals = new Map<string, { runs: number; agreed: number; boxSum: number }>();

  constructor(private readonly metrics: Pick<Metrics, 'shadowComparisons' | 'shadowAgreement' | 'shadowBoxAgreement'>) {}

  compared(
    model: string,
    version: string,
    answer: { verdict: Verdict; detections: readonly Detection[] },
    shadow: { verdict: Verdict; detections: readonly Detection[] },
  ): void {
    const key = `${model}\u0000${version}`;
    let t = this.totals.get(key);
    if (!t) this.totals.set(key, (t = { runs: 0, agreed: 0, boxSum: 0 }));
    const agree = answer.verdict === shadow.verdict;
    t.runs++;
    if (agree) t.agreed++;
    t.boxSum += boxAgreement(answer.detections, shadow.detections);
    const labels = { model, version };
    this.metrics.shadowComparisons.inc({ ...labels, outcome: agree ? 'agree' : 'disagree' });
    this.metrics.shadowAgreement.set(labels, t.agreed / t.runs);
    this.metrics.shadowBoxAgreement.set(labels, t.boxSum / t.runs);
  }

  failed(model: string, version: string): void {
    this.metrics.shadowComparisons.inc({ model, version, outcome: 'failed' });
  }
}
