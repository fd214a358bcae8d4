/**
 * Every TypeScript and shell block of README.md and docs/ runs as written. TypeScript blocks are
 * type-checked together (one tsc run) against the built package, imported as `simple-ipc`, and
 * then run one by one; shell blocks run in bash with `simple-ipc` on the PATH. Each runs in a
 * directory of its own, with `XDG_RUNTIME_DIR` there too (so `userSocketDirectory()` and
 * `simple-ipc socket-dir` point into it), and must leave no server behind.
 *
 * A block that cannot run as it stands says so in an HTML comment on the line before it (not
 * shown on a rendered page), with the reason in parentheses:
 * - `<!-- doc-block: typecheck-only (why) -->`: type-checked, not run (TypeScript only);
 * - `<!-- doc-block: skip (why) -->`: neither;
 * - `<!-- doc-block: given path: string; worktree: string -->`: names the block takes from
 *   the text around it, declared for the type check (implies typecheck-only).
 */

import assert from 'node:assert/strict';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe } from 'node:test';
import { getActiveState } from '../src/index.js';
import { CLI, ROOT, runProcess, test, unixOnly } from './helpers.js';

interface Block {
  /** `docs/api.md:295`. */
  readonly where: string;
  readonly lang: 'ts' | 'sh';
  readonly code: string;
  readonly mode: 'run' | 'typecheck-only' | 'skip';
  readonly given: string;
}

const DOCUMENTS = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`),
];

function blocksOf(document: string): Block[] {
  const text = readFileSync(join(ROOT, document), 'utf8');
  const blocks: Block[] = [];
  const fence = /^```([\w-]*)\n([\s\S]*?)^```$/gm;
  for (const match of text.matchAll(fence)) {
    const lang = match[1];
    if (lang !== 'ts' && lang !== 'sh') continue;
    const line = text.slice(0, match.index).split('\n').length;
    const before = text.slice(0, match.index).trimEnd().split('\n').pop() ?? '';
    const marker = /^<!-- doc-block: (.*) -->$/.exec(before)?.[1] ?? '';
    let mode: Block['mode'] = 'run';
    let given = '';
    // Reasons, in parentheses, may hold anything; the rest is parts separated by ';'.
    const parts = marker.replace(/\([^)]*\)/g, '').split(';');
    for (const part of parts.map((p) => p.trim())) {
      if (part.startsWith('skip')) mode = 'skip';
      else if (part.startsWith('typecheck-only')) mode = mode === 'skip' ? mode : 'typecheck-only';
      else if (part.startsWith('given ')) {
        given += part
          .slice('given '.length)
          .split(',')
          .map((name) => `declare const ${name.trim()};\n`)
          .join('');
        if (mode === 'run') mode = 'typecheck-only';
      } else if (part !== '') throw new Error(`${document}:${line}: unknown marker '${part}'`);
    }
    blocks.push({ where: `${document}:${line}`, lang, code: match[2]!, mode, given });
  }
  return blocks;
}

const blocks = DOCUMENTS.flatMap(blocksOf);
const fileName = (block: Block): string => block.where.replace(/[/:.]/g, '_');

// The consumer project: the built package as node_modules/simple-ipc, one module per block.
const work = mkdtempSync(join(tmpdir(), 'sipc-doc-blocks-'));
after(() => rmSync(work, { recursive: true, force: true }));
const app = join(work, 'app');
const sources = join(app, 'blocks');
const bin = join(work, 'bin');

/** A directory of its own for one block, and the environment it runs in. */
function sandbox(block: Block): { cwd: string; env: NodeJS.ProcessEnv } {
  const cwd = join(work, 'run', fileName(block));
  mkdirSync(cwd, { recursive: true, mode: 0o700 });
  return {
    cwd,
    env: {
      ...process.env,
      XDG_RUNTIME_DIR: cwd,
      PATH: `${bin}${process.platform === 'win32' ? ';' : ':'}${process.env.PATH ?? ''}`,
    },
  };
}

/** Fails if a server still listens at a socket left in `dir` (a leaked daemon). */
async function noServerLeftIn(dir: string, where: string): Promise<void> {
  const left: string[] = [];
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isSocket()) continue;
    const path = join(entry.parentPath, entry.name);
    if ((await getActiveState(path)) === 'listening') left.push(path);
  }
  assert.deepEqual(left, [], `${where} left a server running`);
}

const SKIP = unixOnly('the shell blocks are bash; the TypeScript ones name Unix socket paths');

describe('the code blocks of README.md and docs/', { skip: SKIP }, () => {
  test('there are blocks, and every block marked not to run says why', () => {
    assert.ok(blocks.filter((b) => b.lang === 'ts').length >= 8, 'TypeScript blocks found');
    assert.ok(blocks.filter((b) => b.lang === 'sh').length >= 6, 'shell blocks found');
    for (const document of DOCUMENTS) {
      const text = readFileSync(join(ROOT, document), 'utf8');
      for (const [comment] of text.matchAll(/<!-- doc-block: .* -->/g)) {
        if (/(skip|typecheck-only)/.test(comment)) {
          assert.match(comment, /\(.+\)/, `${document}: ${comment} gives a reason`);
        }
      }
    }
  });

  test('every TypeScript block type-checks against the built package', async () => {
    mkdirSync(join(app, 'node_modules'), { recursive: true });
    writeFileSync(join(app, 'package.json'), JSON.stringify({ type: 'module', private: true }));
    symlinkSync(ROOT, join(app, 'node_modules', 'simple-ipc'), 'junction');
    mkdirSync(join(sources, 'examples', 'git-fsmonitor'), { recursive: true });
    // The fsmonitor blocks import the example's protocol module, from beside them or from the
    // project's root.
    const protocol = join(ROOT, 'examples', 'git-fsmonitor', 'protocol.ts');
    cpSync(protocol, join(sources, 'protocol.ts'));
    cpSync(protocol, join(sources, 'examples', 'git-fsmonitor', 'protocol.ts'));
    const files: string[] = [];
    for (const block of blocks) {
      if (block.lang !== 'ts' || block.mode === 'skip') continue;
      const file = `${fileName(block)}.ts`;
      // A module of its own (top-level await, no names shared with other blocks).
      writeFileSync(join(sources, file), `${block.given}${block.code}\nexport {};\n`);
      files.push(`blocks/${file}`);
    }
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'ES2022',
          strict: true,
          outDir: 'out',
          rootDir: 'blocks',
          types: ['node'],
          typeRoots: [join(ROOT, 'node_modules', '@types')],
          skipLibCheck: true,
        },
        files: [...files, 'blocks/protocol.ts', 'blocks/examples/git-fsmonitor/protocol.ts'],
      }),
    );
    const tsc = await runProcess(
      process.execPath,
      [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app],
      { cwd: app, timeoutMs: 120_000 },
    );
    // Name the document and line of each error instead of the generated file.
    const report = tsc.stdout
      .toString()
      .replace(/blocks\/([\w-]+)\.ts\((\d+)/g, (_all, name: string, line: string) => {
        const block = blocks.find((b) => fileName(b) === name);
        const given = block?.given.split('\n').length ?? 1;
        return `${block?.where ?? name} (+${Number(line) - given + 1}`;
      });
    assert.equal(tsc.code, 0, report);
  });

  for (const block of blocks) {
    if (block.mode !== 'run') continue;
    test(`${block.where} (${block.lang}) runs as written`, async () => {
      const { cwd, env } = sandbox(block);
      if (block.lang === 'sh') {
        mkdirSync(bin, { recursive: true });
        const link = join(bin, 'simple-ipc');
        try {
          symlinkSync(CLI, link);
        } catch {
          // Made by an earlier block.
        }
      }
      const result =
        block.lang === 'ts'
          ? await runProcess(process.execPath, [join(app, 'out', `${fileName(block)}.js`)], {
              cwd,
              env,
              timeoutMs: 60_000,
            })
          : await runProcess('bash', ['-e', '-o', 'pipefail', '-c', block.code], {
              cwd,
              env,
              timeoutMs: 60_000,
            });
      assert.equal(
        result.code,
        0,
        `${block.where} exited ${result.code} ${result.signal ?? ''}\n${result.stdout.toString()}\n${result.stderr}`,
      );
      await noServerLeftIn(cwd, block.where);
    });
  }
});
