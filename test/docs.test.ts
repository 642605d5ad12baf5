import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DOCS = join(ROOT, 'docs');
const README = join(ROOT, 'README.md');
const README_MAX_LINES = 200;

/** docs/*.md and the pages of its sub-folders (docs/outputs/*.md). */
const docPages = (dir = DOCS): string[] =>
  readdirSync(dir, { withFileTypes: true })
    .sort((a, b) => a.name.localeCompare(b.name))
    .flatMap((entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return entry.name === 'images' ? [] : docPages(path);
      return entry.name.endsWith('.md') ? [path] : [];
    });

/** The lines of a Markdown file outside fenced code blocks, with inline code removed. */
function proseLines(text: string): { line: string; number: number }[] {
  const out: { line: string; number: number }[] = [];
  let fence: string | null = null;
  text.split('\n').forEach((raw, i) => {
    const opener = /^\s*(`{3,}|~{3,})/.exec(raw);
    if (opener) {
      if (fence === null) fence = opener[1]![0]!;
      else if (opener[1]![0] === fence) fence = null;
      return;
    }
    if (fence === null) out.push({ line: raw.replace(/(`+)[^`]*?\1/g, ''), number: i + 1 });
  });
  return out;
}

/**
 * GitHub's heading anchors (github-slugger): lower case, punctuation other than
 * `-` and `_` removed, spaces turned into `-`; a repeated slug gets `-1`, `-2`, ….
 */
function headingAnchors(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fence: string | null = null;
  for (const raw of text.split('\n')) {
    const opener = /^\s*(`{3,}|~{3,})/.exec(raw);
    if (opener) {
      if (fence === null) fence = opener[1]![0]!;
      else if (opener[1]![0] === fence) fence = null;
      continue;
    }
    const heading = fence === null ? /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(raw) : null;
    if (!heading) continue;
    const visible = heading[1]!.replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1');
    const base = visible
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
      .replace(/ /g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

/** Inline links and images `[text](target)` in a file's prose, with their line numbers. */
function links(text: string): { target: string; number: number }[] {
  const found: { target: string; number: number }[] = [];
  for (const { line, number } of proseLines(text)) {
    for (const m of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) found.push({ target: m[1]!, number });
  }
  return found;
}

test('every relative link in README.md and docs/*.md points to an existing file and heading', () => {
  const files = [README, ...docPages()];
  const broken: string[] = [];
  let checked = 0;
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    for (const { target, number } of links(text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, …
      checked++;
      const where = `${relative(ROOT, file)}:${number}: ${target}`;
      const [pathPart, anchor] = target.split('#', 2) as [string, string | undefined];
      const linked = pathPart === '' ? file : resolve(dirname(file), decodeURIComponent(pathPart));
      if (!linked.startsWith(ROOT + '/') && linked !== ROOT) {
        broken.push(`${where} (outside the repository)`);
        continue;
      }
      if (!existsSync(linked)) {
        broken.push(`${where} (no such file)`);
        continue;
      }
      if (anchor === undefined) continue;
      if (!linked.endsWith('.md') || statSync(linked).isDirectory()) {
        broken.push(`${where} (an anchor into a file that is not Markdown)`);
        continue;
      }
      if (!headingAnchors(readFileSync(linked, 'utf8')).has(anchor)) broken.push(`${where} (no heading with that anchor)`);
    }
  }
  assert.ok(checked > 50, `only ${checked} relative links found: is the link parser broken?`);
  assert.deepEqual(broken, []);
});

test('every repository path the docs name in code spans exists', () => {
  const missing: string[] = [];
  let checked = 0;
  for (const file of [README, ...docPages()]) {
    let fence = false;
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (/^\s*(`{3,}|~{3,})/.test(line)) fence = !fence;
        if (fence) return;
        for (const m of line.matchAll(/(`+)([^`]+?)\1/g)) {
          const path = m[2]!.trim();
          if (!/^(src|test|scripts|deploy|examples|samples|models|training|bench|docs)\/[\w./-]+$/.test(path)) continue;
          checked++;
          if (!existsSync(join(ROOT, path))) missing.push(`${relative(ROOT, file)}:${i + 1}: ${path}`);
        }
      });
  }
  assert.ok(checked > 10, `only ${checked} paths found`);
  assert.deepEqual(missing, [], 'paths named in the docs that do not exist');
});

test('README.md stays a short entry point and links every docs page', () => {
  const text = readFileSync(README, 'utf8');
  const lines = text.replace(/\n$/, '').split('\n').length;
  assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines (at most ${README_MAX_LINES}); move detail into docs/`);
  const targets = new Set(links(text).map(({ target }) => target.split('#')[0]));
  const unlinked = docPages()
    .map((page) => relative(ROOT, page))
    .filter((page) => !targets.has(page));
  assert.deepEqual(unlinked, [], "docs pages missing from the README's Documentation list");
  for (const phrase of ['npm start', 'npm test']) assert.ok(text.includes(phrase), `README.md names \`${phrase}\``);
});

test("the anchor rules match GitHub's on headings the docs use", () => {
  const anchors = headingAnchors(
    [
      '## Heartbeat, close codes',
      '## Resumable uploads (tus) — `/v1/uploads`',
      '## `stream(options?)` → `StreamConnection`',
      '## API keys (`sightline keys`)',
      '```sh',
      '# create',
      '```',
      '## Metrics',
      '## Metrics',
    ].join('\n'),
  );
  assert.deepEqual(
    [...anchors],
    ['heartbeat-close-codes', 'resumable-uploads-tus--v1uploads', 'streamoptions--streamconnection', 'api-keys-sightline-keys', 'metrics', 'metrics-1'],
  );
});
