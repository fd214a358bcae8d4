/**
 * The docs say what the code does: each statement checked here is parsed out of its table or
 * sentence and compared exactly with the value in the code, so a doc that names a wrong value,
 * drops a row or adds one fails, not only one that forgets a name.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CONNECT_RETRY_INTERVAL_MS,
  CONNECT_TIMEOUT_MS,
  DELIM_PKT,
  ErrorCode,
  FLUSH_PKT,
  LARGE_PACKET_DATA_MAX,
  LARGE_PACKET_MAX,
  RESPONSE_END_PKT,
  SOCKET_PATH_MAX,
  USES_NAMED_PIPES,
} from '../src/index.js';
import { LISTEN_BACKLOG } from '../src/lifecycle.js';
import { LOCK_STALE_MS, LOCK_TIMEOUT_MS } from '../src/lock.js';
import { OWNERSHIP_CHECK_MS } from '../src/ownership.js';
import { REFUSAL_CONFIRM_INTERVAL_MS, REFUSAL_CONFIRM_PROBES } from '../src/refusal.js';
import { serverSettings } from '../src/server-options.js';
import { ROOT, test } from './helpers.js';

const api = readFileSync(join(ROOT, 'docs', 'api.md'), 'utf8');
const lifecycle = readFileSync(join(ROOT, 'docs', 'lifecycle.md'), 'utf8');

/** The text of the section of `doc` under the heading `heading`, up to the next heading. */
function section(doc: string, heading: string): string {
  const start = doc.indexOf(`\n${heading}\n`);
  assert.notEqual(start, -1, `no heading ${heading}`);
  const rest = doc.slice(start + heading.length + 2);
  const end = rest.search(/\n#{1,4} /);
  return end === -1 ? rest : rest.slice(0, end);
}

/** The body rows of the first Markdown table in `text`, as trimmed cells. */
function tableRows(text: string): string[][] {
  const lines = text.split('\n').filter((line) => line.startsWith('|'));
  assert.ok(lines.length > 2, 'no table');
  assert.match(lines[1]!, /^\|[\s|:-]+\|$/, 'the second line is the separator');
  return lines.slice(2).map((line) =>
    line
      .slice(1, -1)
      .split('|')
      .map((cell) => cell.trim()),
  );
}

/** The code of `text`: its fenced blocks, then the spans (text between backticks) outside them. */
function codeSpans(text: string): string[] {
  const blocks: string[] = [];
  const prose = text.replace(/^```[^\n]*\n([\s\S]*?)^```$/gm, (_all, code: string) => {
    blocks.push(code);
    return '';
  });
  return [...blocks, ...[...prose.matchAll(/`([^`]+)`/g)].map((m) => m[1]!)];
}

test('docs/api.md documents every public export, by name in code', () => {
  const index = readFileSync(join(ROOT, 'src', 'index.ts'), 'utf8');
  const names = [...index.matchAll(/export \{([^}]*)\}/g)].flatMap((m) =>
    m[1]!
      .split(',')
      .map((name) => name.replace(/^\s*type\s+/, '').trim())
      .filter((name) => name !== ''),
  );
  assert.ok(names.length > 40, `found ${names.length} exports`);
  // As a whole word inside a code span: `Server` is not documented by `startServer`.
  const spans = codeSpans(api);
  const missing = names.filter(
    (name) => !spans.some((span) => new RegExp(`(^|[^\\w$])${name}($|[^\\w$])`).test(span)),
  );
  assert.deepEqual(missing, [], 'exports missing from docs/api.md');
});

test("docs/api.md's table of error codes lists exactly ErrorCode, each once", () => {
  const rows = tableRows(section(api, '## Errors'));
  const listed = rows.flatMap((row) => codeSpans(row[0]!));
  assert.deepEqual(
    [...listed].sort(),
    [...new Set(listed)].sort(),
    'a code is listed twice in the table',
  );
  assert.deepEqual([...listed].sort(), Object.values(ErrorCode).sort());
  for (const row of rows) assert.notEqual(row[1], '', `no "when" for ${row[0]}`);
});

test('every error code docs/api.md and docs/lifecycle.md name exists', () => {
  const codes: readonly string[] = Object.values(ErrorCode);
  for (const [name, doc] of [
    ['api.md', api],
    ['lifecycle.md', lifecycle],
  ] as const) {
    const named = new Set([...doc.matchAll(/`((?:ERR_[A-Z_]+|ABORT_ERR)\*?)`/g)].map((m) => m[1]!));
    for (const code of named) {
      // `ERR_PKT_LINE_*` names a family: at least one code must be in it.
      const known = code.endsWith('*')
        ? codes.some((c) => c.startsWith(code.slice(0, -1)))
        : codes.includes(code);
      assert.ok(known, `${name} names ${code}, which is no ErrorCode`);
    }
  }
});

test("docs/api.md's table of ServerOptions lists exactly the options, with the code's defaults", () => {
  const rows = tableRows(
    section(api, '### `startServer(path, handler, options?)` → `Promise<Server>`'),
  );
  const defaults = serverSettings(undefined);
  assert.deepEqual(
    rows.map((row) => codeSpans(row[0]!)[0]),
    Object.keys(defaults),
    'the rows name the options, in the order of the code',
  );
  // How each documented default is written, as the value it stands for.
  const documented = Object.fromEntries(
    rows.map(([option, value]) => [codeSpans(option!)[0]!, parseDefault(value!)]),
  );
  const expected: Record<string, unknown> = { ...defaults };
  // `threads * 100`: checked as a rule below.
  expected.queueSize = 'threads * 100';
  assert.deepEqual(documented, expected);
  assert.equal(defaults.queueSize, defaults.threads * 100);
  assert.equal(serverSettings({ threads: 3 }).queueSize, 300);
  assert.equal(defaults.backlog, LISTEN_BACKLOG);
});

/** A default as docs/api.md's tables write it: 8, 64 MiB, 10000 ms, `0o600`, false, or none. */
function parseDefault(text: string): unknown {
  if (text === '' || text === 'a warning') return undefined; // nothing given: the library's own
  if (text === 'false' || text === 'true') return text === 'true';
  const code = /^`(.*)`$/.exec(text);
  if (code !== null) return /^0o[0-7]+$/.test(code[1]!) ? Number(code[1]) : code[1];
  const size = /^(\d+) (KiB|MiB)$/.exec(text);
  if (size !== null) return Number(size[1]) * (size[2] === 'KiB' ? 1024 : 1024 * 1024);
  const number = /^(\d+)(?: ms)?$/.exec(text);
  if (number !== null) return Number(number[1]);
  assert.fail(`a default written as ${JSON.stringify(text)}`);
}

test('the constants docs/api.md gives a value are that value', () => {
  // Written `NAME` = value, or `NAME` (value).
  const stated = new Map(
    [...api.matchAll(/`([A-Z][A-Z_]+)` (?:= (\d+)|\((\d+)|\(`(\d+)`\))/g)].map((m) => [
      m[1]!,
      m[2] ?? m[3] ?? m[4]!,
    ]),
  );
  const actual: Record<string, string> = {
    LARGE_PACKET_MAX: String(LARGE_PACKET_MAX),
    LARGE_PACKET_DATA_MAX: String(LARGE_PACKET_DATA_MAX),
    FLUSH_PKT: FLUSH_PKT.toString(),
    DELIM_PKT: DELIM_PKT.toString(),
    RESPONSE_END_PKT: RESPONSE_END_PKT.toString(),
    CONNECT_RETRY_INTERVAL_MS: String(CONNECT_RETRY_INTERVAL_MS),
    // "1000; 30000 with Windows named pipes": the first number is the Unix one.
    CONNECT_TIMEOUT_MS: USES_NAMED_PIPES ? '1000' : String(CONNECT_TIMEOUT_MS),
  };
  assert.deepEqual(Object.fromEntries(stated), actual);
  if (USES_NAMED_PIPES) assert.equal(CONNECT_TIMEOUT_MS, 30_000);
  assert.match(api, /`CONNECT_TIMEOUT_MS` = 1000; 30000 with Windows named pipes/);
  const pathMax = /`SOCKET_PATH_MAX`[^(]*\((\d+) on Linux,\s+(\d+) on macOS and the BSDs\)/.exec(
    api,
  );
  assert.ok(pathMax !== null, 'SOCKET_PATH_MAX is given for Linux and macOS');
  if (process.platform === 'linux') assert.equal(SOCKET_PATH_MAX, Number(pathMax[1]));
  else if (!USES_NAMED_PIPES) assert.equal(SOCKET_PATH_MAX, Number(pathMax[2]));
});

test('the times and counts docs/lifecycle.md states are the code', () => {
  const words: Record<string, number> = { one: 1, two: 2, three: 3, four: 4, five: 5 };
  const number = (text: string) => words[text] ?? Number(text);
  const find = (re: RegExp) => {
    const m = re.exec(lifecycle);
    assert.ok(m !== null, `docs/lifecycle.md no longer says ${re}`);
    return m;
  };
  const lock = find(/waits\s+up\s+to\s+(\d+)\s+ms\s+\(`lockTimeout`\)/);
  assert.equal(Number(lock[1]), LOCK_TIMEOUT_MS);
  const stale = find(/more\s+than\s+(\w+)\s+seconds\s+old/);
  assert.equal(number(stale[1]!) * 1000, LOCK_STALE_MS);
  const refusal = find(/still\s+refuses\s+(\w+)\s+more\s+probes,\s+(\d+)\s+ms\s+apart/);
  assert.equal(number(refusal[1]!), REFUSAL_CONFIRM_PROBES);
  assert.equal(Number(refusal[2]), REFUSAL_CONFIRM_INTERVAL_MS);
  find(/plus\s+a\s+check\s+every\s+second/);
  assert.equal(OWNERSHIP_CHECK_MS, 1000);
  find(/stops\s+by\s+itself\s+within\s+about\s+a\s+second/);
});

test('docs/api.md names every export of simple-ipc/client where it describes that entry', () => {
  const client = readFileSync(join(ROOT, 'src', 'client.ts'), 'utf8');
  const names = [...client.matchAll(/export \{([^}]*)\}/g)].flatMap((m) =>
    m[1]!
      .split(',')
      .map((name) => name.trim().replace(/^type /, ''))
      .filter((name) => name !== ''),
  );
  const start = api.indexOf("### The client entry: `import { ... } from 'simple-ipc/client'`");
  assert.notEqual(start, -1, 'docs/api.md has a section on the client entry');
  const section = api.slice(start, api.indexOf('\n### ', start + 1));
  assert.deepEqual(
    names.filter((name) => !section.includes(`\`${name}\``)),
    [],
    'exports of simple-ipc/client not named in its section',
  );
});
