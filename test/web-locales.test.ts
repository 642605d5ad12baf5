// The dashboard's languages: en and zh-CN have the same messages, with the same
// placeholders, and every message key the code names exists. No browser needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from './helpers/cli-process.js';
import { flattenKeys, readLocale } from './helpers/browser.js';
import en from '../web/src/locales/en.json' with { type: 'json' };
import zhCN from '../web/src/locales/zh-CN.json' with { type: 'json' };

function leaves(obj: object, prefix = ''): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object') for (const [kk, vv] of leaves(v, key)) out.set(kk, vv);
    else out.set(key, v);
  }
  return out;
}

/** `{name}` placeholders of a vue-i18n message, sorted. */
const placeholders = (message: string): string[] => [...message.matchAll(/\{\s*([\w.]+)\s*\}/g)].map((m) => m[1]!).sort();

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(vue|ts)$/.test(name) ? [path] : [];
  });
}

test('en and zh-CN have the same message keys: a string without its translation fails', () => {
  const enKeys = flattenKeys(en);
  const zhKeys = flattenKeys(zhCN);
  assert.ok(enKeys.length > 20, `en has messages (${enKeys.length})`);
  const zh = new Set(zhKeys);
  const englishOnly = enKeys.filter((k) => !zh.has(k));
  const en_ = new Set(enKeys);
  const chineseOnly = zhKeys.filter((k) => !en_.has(k));
  assert.deepEqual(englishOnly, [], 'keys with no zh-CN translation');
  assert.deepEqual(chineseOnly, [], 'keys with no en message');
  // The files the app bundles are the ones read here.
  assert.deepEqual(flattenKeys(readLocale('en')), enKeys);
  assert.deepEqual(flattenKeys(readLocale('zh-CN')), zhKeys);
});

test('every message is a non-empty string with the same placeholders in both languages; zh-CN is translated', () => {
  const enLeaves = leaves(en);
  const zhLeaves = leaves(zhCN);
  const problems: string[] = [];
  let same = 0;
  for (const [key, value] of enLeaves) {
    const other = zhLeaves.get(key);
    if (typeof value !== 'string' || value.trim() === '') problems.push(`en ${key}: not a non-empty string`);
    if (typeof other !== 'string' || other.trim() === '') {
      problems.push(`zh-CN ${key}: not a non-empty string`);
      continue;
    }
    if (typeof value === 'string' && placeholders(value).join() !== placeholders(other).join())
      problems.push(`${key}: placeholders differ: en ${JSON.stringify(placeholders(value))}, zh-CN ${JSON.stringify(placeholders(other))}`);
    if (value === other && /[a-z]{3,}/i.test(value)) same++;
  }
  assert.deepEqual(problems, []);
  // Names (OK, NG, p95, Sightline) may stay as they are; most text may not.
  assert.ok(same < enLeaves.size * 0.25, `${same} of ${enLeaves.size} zh-CN messages are the English text`);
  assert.ok(/[\u4e00-\u9fff]/.test(JSON.stringify(zhCN)), 'zh-CN has Chinese text');
});

test("every message key the dashboard's code names with t('…') exists", () => {
  const keys = new Set(flattenKeys(en));
  // Object keys too: t('common.state') of a subtree would show "[object Object]".
  const missing: string[] = [];
  let seen = 0;
  for (const file of sourceFiles(join(ROOT, 'web', 'src'))) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\$?\bt\(\s*'([A-Za-z][\w-]*(?:\.[\w-]+)+)'/g)) {
      seen++;
      if (!keys.has(m[1]!)) missing.push(`${relative(ROOT, file)}: ${m[1]}`);
    }
  }
  assert.ok(seen > 20, `found the t('…') calls (${seen})`);
  assert.deepEqual(missing, [], 'keys used in web/src with no message in en.json');
});
