import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { defineComponent, h, onBeforeUnmount, onMounted, type PropType, ref, watch } from 'vue';
import { fmt, i18n } from './i18n';

/**
 * `<TimeChart>`: a small uPlot time-series chart.
 *
 * ```vue
 * <TimeChart :x="h.timestamps" :series="[h.series.latency_ms.p50, h.series.latency_ms.p95]"
 *            :labels="['p50', 'p95']" :thresholds="[{ value: 200, level: 'warn' }, { value: 500, level: 'bad' }]"
 *            unit="ms" :height="160" title="Latency" />
 * ```
 *
 * - `x`: epoch milliseconds (as /v1/stats/history's `timestamps`); `series`: one
 *   array per line, same length as `x`, `null` for a gap.
 * - `labels`: one name per series (legend, tooltip); `colors` optional (CSS colours).
 * - `thresholds`: horizontal dashed lines, amber (`warn`) or red (`bad`); the chart's
 *   root gets the class `over-warn` / `over-bad` when the newest value of the first
 *   series passes one, so a page can colour a heading too.
 * - `format(v)`: how y values print (axis, legend); `unit` is appended otherwise.
 * - `sparkline`: no axes, no legend, no cursor: for tiles.
 * - Updating: replace the arrays or change them in place; the chart redraws when
 *   their content changes (not on a new array of the same values), at most once per
 *   animation frame. It follows its container's width.
 * - Times on the axis are formatted with Intl in the current language.
 */
export interface Threshold {
  value: number;
  level?: 'warn' | 'bad';
  label?: string;
}

const PALETTE = ['#60a5fa', '#f59e0b', '#a78bfa', '#34d399', '#f472b6', '#22d3ee', '#facc15', '#fb7185'];
const LEVEL_COLOR = { warn: '#f59e0b', bad: '#ef4444' };

export const TimeChart = defineComponent({
  name: 'TimeChart',
  props: {
    x: { type: Array as PropType<number[]>, required: true },
    series: { type: Array as PropType<(number | null)[][]>, required: true },
    labels: { type: Array as PropType<string[]>, default: () => [] },
    colors: { type: Array as PropType<string[]>, default: () => [] },
    thresholds: { type: Array as PropType<Threshold[]>, default: () => [] },
    height: { type: Number, default: 160 },
    unit: { type: String, default: '' },
    format: { type: Function as PropType<(v: number) => string>, default: undefined },
    yMin: { type: Number, default: undefined },
    yMax: { type: Number, default: undefined },
    sparkline: { type: Boolean, default: false },
    title: { type: String, default: '' },
  },
  setup(props) {
    const el = ref<HTMLDivElement | null>(null);
    const overClass = ref('');
    let plot: uPlot | null = null;
    let resize: ResizeObserver | null = null;
    let frame = 0;

    const fmtValue = (v: number | null | undefined): string => {
      if (v === null || v === undefined || !Number.isFinite(v)) return '—';
      if (props.format) return props.format(v);
      return props.unit ? `${fmt.number(v)} ${props.unit}` : fmt.number(v);
    };

    const data = (): uPlot.AlignedData => [props.x.map((t) => t / 1000), ...props.series.map((s) => s.map((v) => (v === null || v === undefined ? null : v)))];

    const updateOver = () => {
      const first = props.series[0];
      let last: number | null | undefined;
      if (first) for (let i = first.length - 1; i >= 0 && (last === null || last === undefined); i--) last = first[i];
      let cls = '';
      if (typeof last === 'number')
        for (const t of props.thresholds) {
          if (last >= t.value) cls = t.level === 'bad' || cls === 'over-bad' ? 'over-bad' : 'over-warn';
        }
      overClass.value = cls;
    };

    const build = () => {
      plot?.destroy();
      plot = null;
      if (!el.value) return;
      const width = Math.max(80, el.value.clientWidth);
      const axisStroke = getComputedStyle(el.value).getPropertyValue('--muted').trim() || '#94a3b8';
      const grid = { stroke: 'rgba(148,163,184,0.15)', width: 1 };
      const opts: uPlot.Options = {
        width,
        height: props.height,
        legend: { show: !props.sparkline },
        cursor: props.sparkline ? { show: false } : { drag: { x: false, y: false } },
        padding: props.sparkline ? [2, 0, 2, 0] : [8, 8, 0, 0],
        scales: {
          x: { time: true },
          y: {
            range: (_u, min, max) => {
              let lo = props.yMin ?? Math.min(0, min ?? 0);
              let hi = props.yMax ?? Math.max(max ?? 1, ...props.thresholds.map((t) => t.value * 1.05));
              if (!(hi > lo)) [lo, hi] = [lo, lo + 1];
              return [lo, hi];
            },
          },
        },
        axes: props.sparkline
          ? [{ show: false }, { show: false }]
          : [
              {
                stroke: axisStroke,
                grid,
                ticks: grid,
                values: (_u, splits) => splits.map((s) => fmt.time(s * 1000)),
              },
              {
                stroke: axisStroke,
                grid,
                ticks: grid,
                size: 60,
                values: (_u, splits) => splits.map((v) => fmtValue(v)),
              },
            ],
        series: [
          { value: (_u, v) => (v === null ? '—' : fmt.time(v * 1000)) },
          ...props.series.map((_s, i) => ({
            label: props.labels[i] ?? `#${i + 1}`,
            stroke: props.colors[i] ?? PALETTE[i % PALETTE.length],
            width: props.sparkline ? 1.5 : 2,
            fill: props.sparkline ? 'rgba(96,165,250,0.15)' : undefined,
            spanGaps: false,
            points: { show: false },
            value: (_u: uPlot, v: number | null) => fmtValue(v),
          })),
        ],
        hooks: {
          draw: [
            (u: uPlot) => {
              const ctx = u.ctx;
              for (const t of props.thresholds) {
                const y = u.valToPos(t.value, 'y', true);
                if (!Number.isFinite(y) || y < u.bbox.top || y > u.bbox.top + u.bbox.height) continue;
                ctx.save();
                ctx.strokeStyle = LEVEL_COLOR[t.level ?? 'warn'];
                ctx.setLineDash([6, 4]);
                ctx.lineWidth = 1.5 * uPlot.pxRatio;
                ctx.beginPath();
                ctx.moveTo(u.bbox.left, y);
                ctx.lineTo(u.bbox.left + u.bbox.width, y);
                ctx.stroke();
                ctx.restore();
              }
            },
          ],
        },
      };
      plot = new uPlot(opts, data(), el.value);
      updateOver();
    };

    const redraw = () => {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(() => {
        if (!plot || plot.series.length !== props.series.length + 1) build();
        else plot.setData(data());
        updateOver();
      });
    };

    onMounted(() => {
      build();
      if (el.value && typeof ResizeObserver !== 'undefined') {
        let lastWidth = el.value.clientWidth;
        resize = new ResizeObserver(() => {
          const w = el.value?.clientWidth ?? 0;
          if (!plot || w === lastWidth || w === 0) return;
          lastWidth = w;
          plot.setSize({ width: Math.max(80, w), height: props.height });
        });
        resize.observe(el.value);
      }
    });
    // Compared by content, not by reference: a template that passes `:series="[a, b]"`
    // makes new arrays on every render, which must not redraw (or rebuild) the chart.
    const dataKey = () => {
      let h = props.x.length * 31 + (props.x[0] ?? 0) + (props.x[props.x.length - 1] ?? 0);
      for (const s of props.series) {
        h = (h * 33 + s.length) % 1e15;
        for (let i = 0; i < s.length; i++) {
          const v = s[i];
          if (typeof v === 'number') h = (h + v * (i + 1)) % 1e15;
        }
      }
      return h;
    };
    const shapeKey = () =>
      JSON.stringify([
        props.series.length,
        props.labels,
        props.colors,
        props.thresholds,
        props.height,
        props.sparkline,
        props.unit,
        props.yMin,
        props.yMax,
        i18n.global.locale.value,
      ]);
    watch(dataKey, redraw);
    watch(shapeKey, build);
    onBeforeUnmount(() => {
      cancelAnimationFrame(frame);
      resize?.disconnect();
      plot?.destroy();
      plot = null;
    });

    return () =>
      h('div', {
        ref: el,
        class: ['time-chart', props.sparkline ? 'sparkline' : '', overClass.value],
        role: 'img',
        'aria-label': props.title || props.labels.join(', '),
      });
  },
});
