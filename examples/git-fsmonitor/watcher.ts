/**
 * Watches a worktree for changes with `fs.watch`, one (non-recursive) watch per folder. On
 * Linux every `fs.watch` of a process reads one inotify descriptor, so events arrive in the
 * order they happened, whatever folder they are in: that is what makes cookie files work
 * (an event for a cookie written now comes after every event that came before it).
 *
 * Why not `fs.watch(root, { recursive: true })`: on Linux Node 20 builds that in JavaScript
 * from the same per-folder watches, but a folder made and filled before its watch is in place
 * loses those files' events, and it says nothing when a folder is renamed. Here a new folder is
 * watched first and then read, and everything found in it is reported; a folder renamed or
 * replaced (another inode at the path) has its watches dropped and made again.
 *
 * The one thing `fs.watch` hides is the kernel's queue overflow (libuv drops the
 * `IN_Q_OVERFLOW` event). libuv reads the whole queue in one go and calls the listeners before
 * it returns, so a burst that large shows as many events before the next turn of the event
 * loop: when one burst reaches half of `max_queued_events`, events may have been lost, and
 * {@link TreeWatcher} reports `overflow`.
 */

import { type FSWatcher, lstatSync, readdirSync, readFileSync, watch } from 'node:fs';
import { basename, join } from 'node:path';

/** What the watcher tells its owner. */
export interface WatcherEvents {
  /** A path (relative to the root, `/`-separated) was created, changed, deleted or renamed. */
  change(path: string): void;
  /** A file appeared or changed directly in the git directory (cookies live there). */
  gitDirEntry(name: string): void;
  /** Events may have been lost (queue overflow, a watch that failed): trust nothing before. */
  overflow(reason: string): void;
  /** The worktree or its git directory went away, or cannot be watched: stop. */
  fatal(error: Error): void;
}

interface Watch {
  readonly watcher: FSWatcher;
  /** The folder's inode and birth time: inode numbers alone are reused at once. */
  readonly identity: string;
}

/** The kernel's queue size, or its usual default when it cannot be read. */
function maxQueuedEvents(): number {
  try {
    return Number.parseInt(readFileSync('/proc/sys/fs/inotify/max_queued_events', 'utf8'), 10);
  } catch {
    return 16384;
  }
}

/** Watches every folder of a worktree but its `.git`. */
export class TreeWatcher {
  readonly #root: string;
  readonly #gitDir: string;
  readonly #on: WatcherEvents;
  /** Watched folders by relative path ('' is the root). */
  readonly #watches = new Map<string, Watch>();
  /** Folders that exist but could not be watched (out of inotify watches, no access). */
  readonly #unwatched = new Set<string>();
  #gitWatch: FSWatcher | undefined;
  #burst = 0;
  #burstLimit = Math.max(64, Math.floor(maxQueuedEvents() / 2));
  #closed = false;

  /** Starts watching `root` (absolute, real path) and its git directory `gitDir`. */
  constructor(root: string, gitDir: string, on: WatcherEvents) {
    this.#root = root;
    this.#gitDir = gitDir;
    this.#on = on;
    this.#gitWatch = watch(gitDir, (_type, name) => this.#onGitDir(name));
    this.#gitWatch.on('error', (err) => this.#on.fatal(err));
    this.#addTree('', false);
  }

  /** True while some folder cannot be watched: its changes would go unseen. */
  get blind(): boolean {
    return this.#unwatched.size > 0;
  }

  /** How many folders are watched. */
  get folders(): number {
    return this.#watches.size;
  }

  /** Events in one read from which on events may have been lost. */
  set burstLimit(limit: number) {
    this.#burstLimit = limit;
  }

  /** Stops every watch. */
  close(): void {
    this.#closed = true;
    this.#gitWatch?.close();
    for (const { watcher } of this.#watches.values()) watcher.close();
    this.#watches.clear();
  }

  #countEvent(): void {
    if (this.#burst++ === 0) setImmediate(() => (this.#burst = 0));
    if (this.#burst === this.#burstLimit) {
      this.#on.overflow(
        `${this.#burst} events in one read: the kernel's queue may have overflowed`,
      );
    }
  }

  #onGitDir(name: string | null): void {
    if (this.#closed) return;
    this.#countEvent();
    if (name !== null) this.#on.gitDirEntry(name);
  }

  #onEvent(dir: string, type: string, name: string | null): void {
    if (this.#closed) return;
    this.#countEvent();
    if (name === null) {
      this.#on.overflow(`an event without a name in '${dir}'`);
      return;
    }
    const watched = this.#watches.get(dir);
    if (watched === undefined) return;
    // An event about the watched folder itself (deleted or moved away) comes with the folder's
    // own name, as if about an entry inside it. Its parent's watch reports the folder under its
    // real path, so it is dropped here; the worktree's root going away ends the monitor.
    const abs = dir === '' ? this.#root : join(this.#root, dir);
    if (name === basename(abs) && identity(abs) !== watched.identity) {
      if (dir === '') this.#on.fatal(new Error('the worktree went away'));
      return;
    }
    const path = dir === '' ? name : `${dir}/${name}`;
    // The git directory is not part of the worktree; its loss ends the monitor.
    if (path === '.git') {
      if (!isDirectory(this.#gitDir)) this.#on.fatal(new Error('the .git folder went away'));
      return;
    }
    this.#on.change(path);
    this.#sync(path, type === 'rename');
  }

  /**
   * Brings the watches at `path` in line with what is on disk. A `rename` event (made,
   * deleted, moved in or out) for a watched folder always renews its watches: the folder there
   * now may be another one that the file system gave the same identity.
   */
  #sync(path: string, renamed: boolean): void {
    const now = identity(join(this.#root, path), true);
    const watched = this.#watches.get(path);
    if (watched !== undefined && watched.identity === now && !renamed) return;
    if (watched !== undefined || this.#unwatched.has(path)) this.#dropTree(path);
    if (now !== undefined) this.#addTree(path, true);
  }

  /**
   * Watches the folder at `path` and every folder below it; with `report`, reports every
   * entry found (they may have been made before the watch was in place).
   */
  #addTree(path: string, report: boolean): void {
    const abs = path === '' ? this.#root : join(this.#root, path);
    this.#watches.get(path)?.watcher.close();
    let watcher: FSWatcher;
    let id: string | undefined;
    try {
      watcher = watch(abs, (type, name) => this.#onEvent(path, type, name));
      id = identity(abs, true);
    } catch (err) {
      if (path === '') throw err;
      const code = (err as { code?: string }).code;
      // Gone again already: its parent's event says so.
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      // Out of inotify watches, or no access: we cannot see this folder (until it goes).
      this.#unwatched.add(path);
      this.#on.overflow(`cannot watch '${path}': ${String(err)}`);
      return;
    }
    watcher.on('error', () => {
      // A watched folder that goes away may end its watch with an error; the parent's event
      // has the news. The root's failing is the end.
      if (path === '') this.#on.fatal(new Error('the worktree went away'));
    });
    if (id === undefined) {
      watcher.close();
      return;
    }
    this.#watches.set(path, { watcher, identity: id });
    this.#unwatched.delete(path);
    let entries;
    try {
      entries = readdirSync(abs, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (path === '' && entry.name === '.git') continue;
      const child = path === '' ? entry.name : `${path}/${entry.name}`;
      if (report) this.#on.change(child);
      if (entry.isDirectory()) this.#addTree(child, report);
    }
  }

  /** Stops watching the folder at `path` and everything below it. */
  #dropTree(path: string): void {
    const prefix = `${path}/`;
    for (const dir of this.#unwatched) {
      if (dir === path || dir.startsWith(prefix)) this.#unwatched.delete(dir);
    }
    for (const [dir, { watcher }] of this.#watches) {
      if (dir === path || dir.startsWith(prefix)) {
        watcher.close();
        this.#watches.delete(dir);
      }
    }
  }
}

/** `inode:birth time` of what is at `path` (with `folderOnly`, of a folder only), or undefined. */
function identity(path: string, folderOnly = false): string | undefined {
  try {
    const stats = lstatSync(path, { bigint: true });
    if (folderOnly && !stats.isDirectory()) return undefined;
    return `${stats.ino}:${stats.birthtimeNs}`;
  } catch {
    return undefined;
  }
}

function isDirectory(path: string): boolean {
  try {
    return lstatSync(path).isDirectory();
  } catch {
    return false;
  }
}
