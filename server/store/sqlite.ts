/**
 * The embedded store: one SQLite file (node:sqlite, built into Deno) in WAL
 * mode, its schema versioned by the migrations below. Writes are synchronous
 * and cheap (WAL with synchronous=NORMAL: no fsync per commit), so a job's
 * record is on disk before its process is spawned.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { dirname } from "node:path";
import { percentile } from "./shape.ts";
import type {
  JobEnd,
  JobRecord,
  JobSpawned,
  JobStart,
  ListPage,
  ListQuery,
  MetricsSample,
  RecordStatus,
  ShapeMetricsRecord,
  Store,
  StoreHealth,
  StoreStats,
  TemplateOutcome,
  TemplateStatsRecord,
} from "./store.ts";
import { checkMetricsSample, checkTemplateOutcome, jobLinks } from "./store.ts";
import { decodeCursor, encodeCursor } from "./cursor.ts";

/**
 * Each entry moves the schema one version up; the database records its version in
 * `PRAGMA user_version`. Never edit an entry that has shipped: add one.
 */
const MIGRATIONS: string[] = [
  `CREATE TABLE jobs (
     job_id TEXT PRIMARY KEY,
     command TEXT NOT NULL,
     shape TEXT NOT NULL,
     cwd TEXT,
     session_id TEXT,
     node_id TEXT NOT NULL,
     server_pid INTEGER NOT NULL,
     started_at INTEGER NOT NULL,
     timeout_s REAL,
     timeout_source TEXT NOT NULL,
     status TEXT NOT NULL,
     pid INTEGER,
     pgid INTEGER,
     ended_at INTEGER,
     duration_ms REAL,
     exit_code INTEGER,
     signal TEXT,
     reason TEXT,
     bytes_stdout INTEGER NOT NULL DEFAULT 0,
     bytes_stderr INTEGER NOT NULL DEFAULT 0,
     truncated INTEGER NOT NULL DEFAULT 0,
     output_head TEXT NOT NULL DEFAULT '',
     output_tail TEXT NOT NULL DEFAULT '',
     hooks TEXT
   );
   CREATE INDEX jobs_by_start ON jobs (started_at DESC, job_id DESC);
   CREATE INDEX jobs_by_status ON jobs (status, started_at DESC);
   CREATE INDEX jobs_by_shape ON jobs (shape, status, ended_at DESC);
   CREATE INDEX jobs_running ON jobs (node_id, status) WHERE status = 'running';
   CREATE TABLE sessions (
     session_id TEXT PRIMARY KEY,
     node_id TEXT NOT NULL,
     expires_at INTEGER NOT NULL
   );`,
  // record_metrics: one row per shape, and its runs per status in a second table (rather than a
  // JSON column) so an upsert stays a plain increment. Not tied to jobs: prune leaves them.
  `CREATE TABLE shape_metrics (
     shape TEXT PRIMARY KEY,
     runs INTEGER NOT NULL,
     total_ms REAL NOT NULL,
     max_ms REAL NOT NULL,
     last_at INTEGER NOT NULL
   );
   CREATE INDEX shape_metrics_by_runs ON shape_metrics (runs DESC, shape);
   CREATE TABLE shape_metrics_status (
     shape TEXT NOT NULL,
     status TEXT NOT NULL,
     runs INTEGER NOT NULL,
     PRIMARY KEY (shape, status)
   ) WITHOUT ROWID;`,
  // Prompt template statistics: one row per template, counts only (no job ids), so prune, which
  // deletes job records, never touches them.
  `CREATE TABLE template_stats (
     template TEXT PRIMARY KEY,
     uses INTEGER NOT NULL,
     successes INTEGER NOT NULL,
     last_used_at INTEGER NOT NULL
   ) WITHOUT ROWID;`,
  // Retry attempts as child records: the logical job they belong to and which run they are. Old
  // rows become first runs of no parent. The index holds only children (most jobs have no parent)
  // in the order a parent's attempts are listed.
  `ALTER TABLE jobs ADD COLUMN parent_job_id TEXT;
   ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
   CREATE INDEX jobs_by_parent ON jobs (parent_job_id, attempt, job_id)
     WHERE parent_job_id IS NOT NULL;`,
];

export interface SqliteStoreOptions {
  /** @default Date.now */
  now?: () => number;
}

/** Columns of a listed job (no output). */
const LIST_COLUMNS = `job_id, command, shape, cwd, session_id, node_id, server_pid, started_at,
  timeout_s, timeout_source, parent_job_id, attempt, status, pid, pgid, ended_at, duration_ms,
  exit_code, signal, reason, bytes_stdout, bytes_stderr, truncated, '' AS output_head,
  '' AS output_tail, hooks`;

export class SqliteStore implements Store {
  readonly backend = "sqlite" as const;
  readonly path: string;
  #db: DatabaseSync;
  #now: () => number;
  #statements = new Map<string, StatementSync>();

  /**
   * Opens (creating) the database at `path` and brings its schema up to date.
   * @throws {Error} when the file cannot be opened or its schema is newer than this version knows.
   */
  constructor(path: string, options: SqliteStoreOptions = {}) {
    this.path = path;
    this.#now = options.now ?? Date.now;
    // Records hold commands and their output: readable by the server's user only.
    if (path !== ":memory:") Deno.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.#db = new DatabaseSync(path);
    if (path !== ":memory:") restrict(path);
    // WAL: readers (history) never block the writer; NORMAL: durable across a process crash,
    // which is what a SIGKILLed server needs, without an fsync per job. node:sqlite is
    // synchronous, so a lock held by another process stalls this one: wait at most 1 s, then fail
    // (the job manager retries the write later, without holding anything up).
    this.#db.exec(
      "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 1000;",
    );
    // SQLite's lower() folds ASCII only; search folds case the way JavaScript (and Redis) does.
    this.#db.function("lower_u", { deterministic: true }, (text) => String(text).toLowerCase());
    try {
      this.#migrate();
    } catch (error) {
      // Not left open behind a constructor that threw: nothing else could close it.
      this.#db.close();
      throw error;
    }
  }

  #migrate(): void {
    const { user_version: version } = this.#db.prepare("PRAGMA user_version").get() as {
      user_version: number;
    };
    if (version > MIGRATIONS.length) {
      throw new Error(
        `${this.path} has schema version ${version}, newer than this cc-executor knows (${MIGRATIONS.length})`,
      );
    }
    for (let next = version; next < MIGRATIONS.length; next++) {
      this.#db.exec("BEGIN IMMEDIATE");
      try {
        this.#db.exec(MIGRATIONS[next]!);
        this.#db.exec(`PRAGMA user_version = ${next + 1}`);
        this.#db.exec("COMMIT");
      } catch (error) {
        this.#db.exec("ROLLBACK");
        throw error;
      }
    }
  }

  /** Runs synchronous SQLite work as a Store method: errors (a bad cursor, a broken file) reject. */
  #run<T>(work: () => T): Promise<T> {
    try {
      return Promise.resolve(work());
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #statement(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (!statement) this.#statements.set(sql, statement = this.#db.prepare(sql));
    return statement;
  }

  jobStarted(s: JobStart): Promise<void> {
    return this.#run(() => {
      const links = jobLinks(s);
      this.#statement(
        `INSERT OR REPLACE INTO jobs (job_id, command, shape, cwd, session_id, node_id, server_pid,
           started_at, timeout_s, timeout_source, parent_job_id, attempt, status)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')`,
      ).run(
        s.job_id,
        s.command,
        s.shape,
        s.cwd,
        s.session_id,
        s.node_id,
        s.server_pid,
        s.started_at,
        s.timeout_s,
        s.timeout_source,
        links.parent_job_id,
        links.attempt,
      );
    });
  }

  jobSpawned(jobId: string, spawned: JobSpawned): Promise<void> {
    return this.#run(() => {
      this.#statement("UPDATE jobs SET pid = ?, pgid = ? WHERE job_id = ?").run(
        spawned.pid,
        spawned.pgid,
        jobId,
      );
    });
  }

  jobEnded(jobId: string, e: JobEnd): Promise<void> {
    return this.#run(() => {
      this.#statement(
        `UPDATE jobs SET status = ?, ended_at = ?, duration_ms = ?, exit_code = ?, signal = ?,
           reason = ?, bytes_stdout = ?, bytes_stderr = ?, truncated = ?, output_head = ?,
           output_tail = ?, hooks = ?
         WHERE job_id = ?`,
      ).run(
        e.status,
        e.ended_at,
        e.duration_ms,
        e.exit_code,
        e.signal,
        e.reason,
        e.bytes_stdout,
        e.bytes_stderr,
        e.truncated ? 1 : 0,
        e.output_head,
        e.output_tail,
        e.hooks === null || e.hooks === undefined ? null : JSON.stringify(e.hooks),
        jobId,
      );
    });
  }

  get(jobId: string): Promise<JobRecord | null> {
    return this.#run(() => {
      const row = this.#statement("SELECT * FROM jobs WHERE job_id = ?").get(jobId);
      return (row ? toRecord(row) : null);
    });
  }

  list(query: ListQuery): Promise<ListPage> {
    return this.#run(() => {
      // A parent's attempts come oldest first, paged by (attempt, job id); everything else newest
      // first, paged by (started_at, job id). The cursor holds the pair of its own order.
      const children = query.parent_job_id !== undefined;
      const where: string[] = [];
      const args: (string | number)[] = [];
      if (children) {
        where.push("parent_job_id = ?");
        args.push(query.parent_job_id!);
      }
      if (query.cursor) {
        const { startedAt: at, jobId } = decodeCursor(query.cursor);
        where.push(
          children
            ? "(attempt > ? OR (attempt = ? AND job_id > ?))"
            : "(started_at < ? OR (started_at = ? AND job_id < ?))",
        );
        args.push(at, at, jobId);
      }
      if (query.status) {
        where.push("status = ?");
        args.push(query.status);
      }
      if (query.since !== undefined) {
        where.push("started_at >= ?");
        args.push(query.since);
      }
      if (query.search) {
        where.push("instr(lower(command), lower(?)) > 0");
        args.push(query.search);
      }
      const rows = this.#db.prepare(
        `SELECT ${LIST_COLUMNS} FROM jobs ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
         ORDER BY ${children ? "attempt, job_id" : "started_at DESC, job_id DESC"} LIMIT ?`,
      ).all(...args, query.limit + 1);
      const jobs = rows.slice(0, query.limit).map(toRecord);
      const last = jobs.at(-1);
      return ({
        jobs,
        next_cursor: rows.length > query.limit && last
          ? encodeCursor(children ? last.attempt : last.started_at, last.job_id)
          : null,
      });
    });
  }

  orphans(nodeId: string, serverPid: number): Promise<JobRecord[]> {
    return this.#run(() => {
      const rows = this.#statement(
        `SELECT * FROM jobs WHERE status = 'running' AND node_id = ? AND server_pid != ?
       ORDER BY started_at, job_id`,
      ).all(nodeId, serverPid);
      return (rows.map(toRecord));
    });
  }

  markInterrupted(
    jobId: string,
    endedAt: number,
    reason: string,
    status: "interrupted" | "lost" = "interrupted",
  ): Promise<void> {
    return this.#run(() => {
      this.#statement(
        `UPDATE jobs SET status = ?, ended_at = ?, duration_ms = ? - started_at,
           reason = ? WHERE job_id = ? AND status = 'running'`,
      ).run(status, endedAt, endedAt, reason, jobId);
    });
  }

  durations(shape: string, limit: number): Promise<number[]> {
    return this.#run(() => {
      const rows = this.#statement(
        `SELECT duration_ms FROM jobs WHERE shape = ? AND status = 'completed'
         ORDER BY ended_at DESC LIMIT ?`,
      ).all(shape, limit) as { duration_ms: number }[];
      return (rows.map((row) => row.duration_ms));
    });
  }

  stats(options: { shapes: number }): Promise<StoreStats> {
    return this.#run(() => {
      const byStatus: StoreStats["by_status"] = {};
      const statusRows = this.#statement("SELECT status, count(*) AS n FROM jobs GROUP BY status")
        .all() as { status: RecordStatus; n: number }[];
      for (const row of statusRows) byStatus[row.status] = row.n;
      const shapeRows = this.#statement(
        `SELECT shape, count(*) AS n FROM jobs WHERE status = 'completed'
         GROUP BY shape ORDER BY n DESC, shape LIMIT ?`,
      ).all(options.shapes) as { shape: string; n: number }[];
      const by_shape = shapeRows.map((row) => {
        // Percentiles over the recent runs, as the adaptive timeout sees them.
        const durations = (this.#statement(
          `SELECT duration_ms FROM jobs WHERE shape = ? AND status = 'completed'
           ORDER BY ended_at DESC LIMIT 1000`,
        ).all(row.shape) as { duration_ms: number }[]).map((r) => r.duration_ms);
        return {
          shape: row.shape,
          count: row.n,
          p50_ms: percentile(durations, 50),
          p95_ms: percentile(durations, 95),
        };
      });
      return ({ by_status: byStatus, by_shape });
    });
  }

  recordMetrics(sample: MetricsSample): Promise<void> {
    return this.#run(() => {
      checkMetricsSample(sample);
      // One transaction: a reader never sees runs counted without their status (or the reverse).
      this.#db.exec("BEGIN IMMEDIATE");
      try {
        this.#statement(
          `INSERT INTO shape_metrics (shape, runs, total_ms, max_ms, last_at) VALUES (?, 1, ?, ?, ?)
           ON CONFLICT (shape) DO UPDATE SET runs = runs + 1,
             total_ms = total_ms + excluded.total_ms,
             max_ms = max(max_ms, excluded.max_ms),
             last_at = max(last_at, excluded.last_at)`,
        ).run(sample.shape, sample.duration_ms, sample.duration_ms, sample.ended_at);
        this.#statement(
          `INSERT INTO shape_metrics_status (shape, status, runs) VALUES (?, ?, 1)
           ON CONFLICT (shape, status) DO UPDATE SET runs = runs + 1`,
        ).run(sample.shape, sample.status);
        this.#db.exec("COMMIT");
      } catch (error) {
        this.#db.exec("ROLLBACK");
        throw error;
      }
    });
  }

  metrics(limit: number): Promise<ShapeMetricsRecord[]> {
    return this.#run(() => {
      if (limit <= 0) return [];
      const rows = this.#statement(
        `SELECT shape, runs, total_ms, max_ms, last_at FROM shape_metrics
         ORDER BY runs DESC, shape LIMIT ?`,
      ).all(limit) as {
        shape: string;
        runs: number;
        total_ms: number;
        max_ms: number;
        last_at: number;
      }[];
      const statuses = this.#statement(
        "SELECT status, runs FROM shape_metrics_status WHERE shape = ? ORDER BY status",
      );
      return rows.map((row) => {
        const by_status: Record<string, number> = {};
        for (const s of statuses.all(row.shape) as { status: string; runs: number }[]) {
          by_status[s.status] = Number(s.runs);
        }
        return {
          shape: row.shape,
          runs: Number(row.runs),
          by_status,
          total_ms: Number(row.total_ms),
          max_ms: Number(row.max_ms),
          last_at: Number(row.last_at),
        };
      });
    });
  }

  recordTemplateOutcome(outcome: TemplateOutcome): Promise<void> {
    return this.#run(() => {
      checkTemplateOutcome(outcome);
      // One statement: uses and successes move together.
      this.#statement(
        `INSERT INTO template_stats (template, uses, successes, last_used_at) VALUES (?, 1, ?, ?)
         ON CONFLICT (template) DO UPDATE SET uses = uses + 1,
           successes = successes + excluded.successes,
           last_used_at = max(last_used_at, excluded.last_used_at)`,
      ).run(outcome.template, outcome.success ? 1 : 0, outcome.at);
    });
  }

  templateStats(): Promise<TemplateStatsRecord[]> {
    return this.#run(() => {
      // TEXT compares with memcmp over UTF-8: byte order, as the Redis store sorts.
      const rows = this.#statement(
        "SELECT template, uses, successes, last_used_at FROM template_stats ORDER BY template",
      ).all() as { template: string; uses: number; successes: number; last_used_at: number }[];
      return rows.map((row) => ({
        template: row.template,
        uses: Number(row.uses),
        successes: Number(row.successes),
        last_used_at: Number(row.last_used_at),
      }));
    });
  }

  prune(before: number): Promise<number> {
    return this.#run(() => {
      const result = this.#statement(
        "DELETE FROM jobs WHERE status != 'running' AND ended_at < ?",
      ).run(before);
      return (Number(result.changes));
    });
  }

  sessionOpened(sessionId: string, nodeId: string, ttlMs: number): Promise<void> {
    return this.#run(() => {
      this.#statement(
        "INSERT OR REPLACE INTO sessions (session_id, node_id, expires_at) VALUES (?, ?, ?)",
      ).run(sessionId, nodeId, this.#now() + ttlMs);
    });
  }

  heartbeat(sessionIds: string[], ttlMs: number): Promise<void> {
    return this.#run(() => {
      const expires = this.#now() + ttlMs;
      const update = this.#statement("UPDATE sessions SET expires_at = ? WHERE session_id = ?");
      this.#db.exec("BEGIN");
      try {
        for (const id of sessionIds) update.run(expires, id);
        // Expired sessions (of a server that died) are dropped here rather than by a scan.
        this.#statement("DELETE FROM sessions WHERE expires_at < ?").run(this.#now());
        this.#db.exec("COMMIT");
      } catch (error) {
        this.#db.exec("ROLLBACK");
        throw error;
      }
    });
  }

  sessionClosed(sessionId: string): Promise<void> {
    return this.#run(() => {
      this.#statement("DELETE FROM sessions WHERE session_id = ?").run(sessionId);
    });
  }

  liveSessions(): Promise<number> {
    return this.#run(() => {
      const row = this.#statement("SELECT count(*) AS n FROM sessions WHERE expires_at >= ?")
        .get(this.#now()) as { n: number };
      return (row.n);
    });
  }

  health(): StoreHealth {
    return {
      backend: "sqlite",
      status: "ok",
      pending_writes: 0,
      dropped_writes: 0,
      location: this.path,
    };
  }

  [Symbol.asyncDispose](): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
    return Promise.resolve();
  }
}

/** Makes a new database file (and its WAL files, created with the same mode) 0600. */
function restrict(path: string): void {
  try {
    if ((Deno.statSync(path).mode ?? 0) & 0o077) Deno.chmodSync(path, 0o600);
  } catch (error) {
    // Not ours to change (a shared file another user created): leave it as it is.
    if (!(error instanceof Deno.errors.PermissionDenied)) throw error;
  }
}

function toRecord(row: Record<string, unknown>): JobRecord {
  return {
    job_id: row.job_id as string,
    command: row.command as string,
    shape: row.shape as string,
    cwd: (row.cwd as string | null) ?? null,
    session_id: (row.session_id as string | null) ?? null,
    node_id: row.node_id as string,
    server_pid: Number(row.server_pid),
    started_at: Number(row.started_at),
    timeout_s: row.timeout_s === null ? null : Number(row.timeout_s),
    timeout_source: row.timeout_source as JobRecord["timeout_source"],
    parent_job_id: (row.parent_job_id as string | null) ?? null,
    attempt: Number(row.attempt),
    status: row.status as RecordStatus,
    pid: row.pid === null ? null : Number(row.pid),
    pgid: row.pgid === null ? null : Number(row.pgid),
    ended_at: row.ended_at === null ? null : Number(row.ended_at),
    duration_ms: row.duration_ms === null ? null : Number(row.duration_ms),
    exit_code: row.exit_code === null ? null : Number(row.exit_code),
    signal: (row.signal as string | null) ?? null,
    reason: (row.reason as string | null) ?? null,
    bytes_stdout: Number(row.bytes_stdout),
    bytes_stderr: Number(row.bytes_stderr),
    truncated: Boolean(row.truncated),
    output_head: row.output_head as string,
    output_tail: row.output_tail as string,
    hooks: row.hooks === null || row.hooks === undefined ? null : JSON.parse(row.hooks as string),
  };
}
