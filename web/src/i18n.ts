import { createI18n } from 'vue-i18n';
import en from './locales/en.json';
import zhCN from './locales/zh-CN.json';

/**
 * Languages: English and Simplified Chinese, in src/locales/<locale>.json with the
 * same keys (a unit test compares the key sets: `messages` and `flattenKeys`).
 * The choice is kept in localStorage; the first visit follows the browser.
 *
 * A missing key is never silent: it is logged with console.error (the browser
 * tests fail on console errors) and collected in `missingKeys` (also on
 * `window.__sightlineMissingKeys` for tests). No fallback to another language
 * hides it.
 */
export const LOCALES = ['en', 'zh-CN'] as const;
export type Locale = (typeof LOCALES)[number];
export type MessageSchema = typeof en;

export const messages: Record<Locale, MessageSchema> = { en, 'zh-CN': zhCN };

const STORAGE_KEY = 'sightline.locale';

function initialLocale(): Locale {
  let stored: string | null = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    // storage disabled: follow the browser
  }
  if (stored && (LOCALES as readonly string[]).includes(stored)) return stored as Locale;
  return navigator.language?.toLowerCase().startsWith('zh') ? 'zh-CN' : 'en';
}

export const missingKeys = new Set<string>();
declare global {
  interface Window {
    __sightlineMissingKeys?: Set<string>;
  }
}
if (typeof window !== 'undefined') window.__sightlineMissingKeys = missingKeys;

export const i18n = createI18n<[MessageSchema], Locale, false>({
  legacy: false,
  locale: initialLocale(),
  fallbackLocale: false,
  messages,
  missingWarn: false,
  fallbackWarn: false,
  missing: (locale, key) => {
    const id = `${locale}:${key}`;
    if (!missingKeys.has(id)) {
      missingKeys.add(id);
      console.error(`[i18n] missing translation ${id}`);
    }
    return key;
  },
});

document.documentElement.lang = i18n.global.locale.value;

export function setLocale(locale: Locale): void {
  i18n.global.locale.value = locale;
  document.documentElement.lang = locale;
  try {
    localStorage.setItem(STORAGE_KEY, locale);
  } catch {
    // not remembered
  }
}

export const currentLocale = (): Locale => i18n.global.locale.value as Locale;

/** Every key of a message object, dotted (`app.nav.lines`), sorted: for comparing locales. */
export function flattenKeys(obj: object, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object') out.push(...flattenKeys(v, key));
    else out.push(key);
  }
  return out.sort();
}

// Intl formatters, cached per locale and options: by the options object itself when
// it is a constant (fast), else by its JSON. Read the locale inside the call so
// templates that use them re-render when the language changes.
type Formatter = Intl.NumberFormat | Intl.DateTimeFormat | Intl.RelativeTimeFormat;
const byObject = new WeakMap<object, Map<string, Formatter>>();
const byJson = new Map<string, Formatter>();
function cached<T extends Formatter>(kind: string, options: object, make: (l: string) => T): T {
  const locale = currentLocale();
  let perLocale = byObject.get(options);
  let f = perLocale?.get(locale) as T | undefined;
  if (f) return f;
  const id = `${kind}|${locale}|${JSON.stringify(options)}`;
  f = byJson.get(id) as T | undefined;
  if (!f) byJson.set(id, (f = make(locale)));
  if (!perLocale) byObject.set(options, (perLocale = new Map()));
  perLocale.set(locale, f);
  return f;
}

const ONE_DECIMAL: Intl.NumberFormatOptions = { maximumFractionDigits: 1 };
const INTEGER: Intl.NumberFormatOptions = { maximumFractionDigits: 0 };
const PERCENT = [0, 1, 2, 3].map((d): Intl.NumberFormatOptions => ({ style: 'percent', minimumFractionDigits: d, maximumFractionDigits: d }));
const DATE_TIME: Intl.DateTimeFormatOptions = { dateStyle: 'short', timeStyle: 'medium' };
const TIME: Intl.DateTimeFormatOptions = { timeStyle: 'medium' };
const RELATIVE: Intl.RelativeTimeFormatOptions = { numeric: 'auto' };

/** Numbers, dates and durations in the current language. `null`/`undefined`/NaN print as "—". */
export const fmt = {
  number(value: number | null | undefined, options: Intl.NumberFormatOptions = ONE_DECIMAL): string {
    if (value === null || value === undefined || !Number.isFinite(value)) return '—';
    return cached('n', options, (l) => new Intl.NumberFormat(l, options)).format(value);
  },
  integer(value: number | null | undefined): string {
    return fmt.number(value, INTEGER);
  },
  /** 0.0123 → "1.2%" */
  percent(value: number | null | undefined, digits = 1): string {
    return fmt.number(value, PERCENT[digits] ?? { style: 'percent', minimumFractionDigits: digits, maximumFractionDigits: digits });
  },
  /** Milliseconds: "41.2 ms" */
  ms(value: number | null | undefined): string {
    if (value === null || value === undefined || !Number.isFinite(value)) return '—';
    return `${fmt.number(value, { maximumFractionDigits: value < 10 ? 1 : 0 })} ms`;
  },
  bytes(value: number | null | undefined): string {
    if (value === null || value === undefined || !Number.isFinite(value)) return '—';
    const units = ['byte', 'kilobyte', 'megabyte', 'gigabyte', 'terabyte'];
    let v = value;
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return fmt.number(v, { style: 'unit', unit: units[i], unitDisplay: 'short', maximumFractionDigits: v < 10 ? 1 : 0 });
  },
  /** A date and time (ISO string or epoch ms). */
  dateTime(value: string | number | Date | null | undefined): string {
    if (value === null || value === undefined) return '—';
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return '—';
    return cached('dt', DATE_TIME, (l) => new Intl.DateTimeFormat(l, DATE_TIME)).format(d);
  },
  time(value: string | number | Date | null | undefined): string {
    if (value === null || value === undefined) return '—';
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return '—';
    return cached('t', TIME, (l) => new Intl.DateTimeFormat(l, TIME)).format(d);
  },
  /** A duration in seconds as the largest whole unit: "12 s", "3 min", "2 h", "4 d" (narrow units, localised). */
  age(seconds: number | null | undefined): string {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
    const s = Math.max(0, Math.floor(seconds));
    const [n, unit] =
      s < 120 ? [s, 'second'] : s < 7200 ? [Math.floor(s / 60), 'minute'] : s < 172800 ? [Math.floor(s / 3600), 'hour'] : [Math.floor(s / 86400), 'day'];
    return fmt.number(n, { style: 'unit', unit, unitDisplay: 'short', maximumFractionDigits: 0 });
  },
  /** "12 seconds ago" / "12秒前" */
  relative(value: string | number | Date | null | undefined, now = Date.now()): string {
    if (value === null || value === undefined) return '—';
    const t = new Date(value).getTime();
    if (Number.isNaN(t)) return '—';
    const s = Math.round((t - now) / 1000);
    const abs = Math.abs(s);
    const [n, unit]: [number, Intl.RelativeTimeFormatUnit] =
      abs < 120 ? [s, 'second'] : abs < 7200 ? [Math.round(s / 60), 'minute'] : abs < 172800 ? [Math.round(s / 3600), 'hour'] : [Math.round(s / 86400), 'day'];
    return cached('rt', RELATIVE, (l) => new Intl.RelativeTimeFormat(l, RELATIVE)).format(n, unit);
  },
};
