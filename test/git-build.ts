/**
 * Where the live-Git tests find Git: a build with `bin/git` (2.55 or later, with the builtin
 * filesystem monitor) and `helper/test-tool` (Git's `t/helper/test-tool`), in the folder named
 * by `SIMPLE_IPC_GIT_DIR`, or else in `../shared/git` beside the project's root.
 * `SIMPLE_IPC_GIT_TEST_TOOL` still names a test tool on its own and wins over the build's.
 *
 * Every Git these tests run gets {@link gitEnv}: no system or global configuration, a HOME
 * of its own, no GIT_* variables of the caller, fixed identities and dates, and `PATH` with
 * the build's `helper/` first (Git's `start-daemon` runs `test-tool` from PATH).
 */

import { accessSync, constants, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { ROOT } from './helpers.js';

/** A Git build to test against. */
export interface GitBuild {
  /** The build's folder. */
  readonly dir: string;
  /** `bin/git`. */
  readonly git: string;
  /** `bin/`, for `GIT_EXEC_PATH`. */
  readonly execPath: string;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The folder that may hold the build, and how it was chosen (for skip messages). */
function buildDir(): { dir: string; from: string } {
  const env = process.env['SIMPLE_IPC_GIT_DIR'];
  if (env !== undefined && env !== '') return { dir: resolve(env), from: 'SIMPLE_IPC_GIT_DIR' };
  return { dir: resolve(ROOT, '..', 'shared', 'git'), from: "the project's ../shared/git" };
}

const where = buildDir();
// On Windows only a Windows build will do (a Linux build in the folder is not a program there).
const EXE = process.platform === 'win32' ? '.exe' : '';
const gitPath = join(where.dir, 'bin', `git${EXE}`);

/** The Git build, or undefined when there is none. */
export const GIT_BUILD: GitBuild | undefined = executable(gitPath)
  ? { dir: where.dir, git: gitPath, execPath: dirname(gitPath) }
  : undefined;

/** A skip message when there is no Git build, else false (for `test(name, { skip })`). */
export const GIT_BUILD_SKIP: string | false =
  GIT_BUILD === undefined
    ? `no Git build: ${gitPath} (from ${where.from}) is missing; set SIMPLE_IPC_GIT_DIR to a ` +
      `folder holding bin/git${EXE} (Git 2.55 or later) to run this`
    : false;

function testToolPath(): { path: string | undefined; skip: string | false } {
  const env = process.env['SIMPLE_IPC_GIT_TEST_TOOL'];
  if (env !== undefined && env !== '') {
    return executable(env)
      ? { path: env, skip: false }
      : { path: undefined, skip: `SIMPLE_IPC_GIT_TEST_TOOL names ${env}, which is not a program` };
  }
  const built = join(where.dir, 'helper', `test-tool${EXE}`);
  return executable(built)
    ? { path: built, skip: false }
    : {
        path: undefined,
        skip:
          `no Git test tool: ${built} (from ${where.from}) is missing; set ` +
          "SIMPLE_IPC_GIT_TEST_TOOL to Git's built t/helper/test-tool, or SIMPLE_IPC_GIT_DIR " +
          'to a folder holding helper/test-tool, to run this',
      };
}

const tool = testToolPath();
/** Git's C test tool (`t/helper/test-tool`), or undefined. */
export const TEST_TOOL: string | undefined = tool.path;
/** A skip message when there is no test tool, else false. */
export const TEST_TOOL_SKIP: string | false = tool.skip;

// With SIMPLE_IPC_REQUIRE_GIT=1 (the GitHub workflow sets it after building Git), a missing
// build or test tool fails every file that needs them instead of skipping their tests.
if (process.env['SIMPLE_IPC_REQUIRE_GIT'] === '1') {
  const missing = [GIT_BUILD_SKIP, TEST_TOOL_SKIP].filter((m) => m !== false);
  if (missing.length > 0) {
    throw new Error(`SIMPLE_IPC_REQUIRE_GIT=1, but ${missing.join('; and ')}`);
  }
}

/**
 * The environment for a Git process, whichever Git it is: the caller's, without any GIT_* or
 * proxy variable, with no system or global configuration, `HOME` set to `home` (made if
 * missing; without it, a folder that does not exist), fixed identities and dates, no advice,
 * no prompt, C locale; then `extra`.
 */
export function isolatedGitEnv(home?: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  // Without a home of its own, one that does not exist: Git then reads no user configuration.
  if (home === undefined) home = join(tmpdir(), 'simple-ipc-no-home');
  else mkdirSync(home, { recursive: true });
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('GIT_') && !/_proxy$/i.test(key) && key !== 'XDG_CONFIG_HOME')
      env[key] = value;
  }
  return Object.assign(env, {
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: join(home, '.gitconfig'),
    GIT_AUTHOR_NAME: 'A U Thor',
    GIT_AUTHOR_EMAIL: 'author@example.com',
    GIT_AUTHOR_DATE: '1700000000 +0000',
    GIT_COMMITTER_NAME: 'C O Mitter',
    GIT_COMMITTER_EMAIL: 'committer@example.com',
    GIT_COMMITTER_DATE: '1700000000 +0000',
    GIT_TERMINAL_PROMPT: '0',
    GIT_ADVICE: '0',
    // No background maintenance: `git commit` starts a detached `git maintenance run --auto`,
    // a process no test waits for, which may write in .git after the test has ended.
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'maintenance.auto',
    GIT_CONFIG_VALUE_0: 'false',
    NO_PROXY: '*',
    no_proxy: '*',
    LC_ALL: 'C',
    ...extra,
  });
}

/**
 * The environment for the Git build and its test tool: {@link isolatedGitEnv}, with
 * `GIT_EXEC_PATH` at the build, and the test tool's folder and the build's `bin/` first on PATH.
 */
export function gitEnv(home?: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const path = [
    ...(TEST_TOOL === undefined ? [] : [dirname(TEST_TOOL)]),
    ...(GIT_BUILD === undefined ? [] : [GIT_BUILD.execPath]),
    process.env['PATH'] ?? '',
  ];
  return isolatedGitEnv(home, {
    PATH: path.join(delimiter),
    ...(GIT_BUILD === undefined ? {} : { GIT_EXEC_PATH: GIT_BUILD.execPath }),
    ...extra,
  });
}
