/**
 * The Redis store's outbox: job writes that are waiting for Redis (an
 * outage) are also kept in a local SQLite file, so a server killed during the
 * outage does not lose them. The next server to open the same outbox sends
 * them first, and its start-up sweep then finds the jobs they describe.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { dirname } from "node:path";

/** One queued job write: which script, on which key, with which arguments. */
export interface OutboxEntry {
  id: number;
  script: string;
  key: string;
  args: string[];
}

export class Outbox implements Disposable {
  readonly path: string;
  #db: DatabaseSync;

  constructor(path: string) {
    this.path = path;
    if (path !== ":memory:") Deno.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.#db = new DatabaseSync(path);
    // Queued writes hold commands: readable by the server's user only, as the history file is.
    if (path !== ":memory:") {
      try {
        Deno.chmodSync(path, 0o600);
      } catch (error) {
        // Another user's file: not ours to change.
        if (!(error instanceof Deno.errors.PermissionDenied)) throw error;
      }
    }
    this.#db.exec(
      `PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 1000;
      CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        script TEXT NOT NULL,
        key TEXT NOT NULL,
        args TEXT NOT NULL
      );`,
    );
  }

  /** Keeps a write; resolves to its id, to remove it once it has landed. */
  add(script: string, key: string, args: string[]): number {
    const result = this.#db.prepare("INSERT INTO outbox (script, key, args) VALUES (?, ?, ?)")
      .run(script, key, JSON.stringify(args));
    return Number(result.lastInsertRowid);
  }

  remove(id: number): void {
    this.#db.prepare("DELETE FROM outbox WHERE id = ?").run(id);
  }

  /** What a previous server left, oldest first. */
  entries(): OutboxEntry[] {
    return (this.#db.prepare("SELECT id, script, key, args FROM outbox ORDER BY id").all() as {
      id: number;
      script: string;
      key: string;
      args: string;
    }[]).map((row) => ({ ...row, args: JSON.parse(row.args) }));
  }

  [Symbol.dispose](): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
