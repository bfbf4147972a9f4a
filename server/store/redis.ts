/**
 * The shared store: one Redis that several servers write to, so history,
 * timing statistics and live sessions are seen across all of them.
 *
 * Keys (all under the prefix, default `cc-executor:`):
 *
 *     job:<id>                hash, one per job (every JobRecord field; a null field is absent)
 *     jobs                    sorted set of job ids by started_at: the newest-first history
 *     jobs:status:<status>    sorted set by started_at, one per status: the status filter
 *     jobs:ended              sorted set of finished job ids by ended_at: what prune deletes
 *     jobs:parent:<job_id>    sorted set of the job's retry attempts (the records whose
 *                             parent_job_id it is) by attempt: the parent filter
 *     running:<node_id>       set of the node's running job ids: orphans()
 *     durations:<shape>       list of the last 1000 completed durations (ms), newest first
 *     shapes                  sorted set of shape -> completed jobs on record
 *     metrics:<shape>         hash of record_metrics' counts: runs, status:<status> (one field
 *                             per status seen), total_ms, max_ms, last_at; never pruned
 *     metrics                 sorted set of shape -> runs: the most-run shapes first
 *     template_stats          hash of the prompt templates' counts: uses:<name>,
 *                             successes:<name>, last_used_at:<name>; never pruned
 *     sessions                sorted set of session ids by expiry (epoch ms)
 *
 * No operation walks the key space (no KEYS, no SCAN): every read is an index
 * lookup, so the cost does not grow with the number of jobs, except `search`
 * (see `list`). A job's writes are Lua scripts: one round trip, atomic, and
 * able to read the record they change (its status, shape, node) to move its
 * index entries. The scripts build key names from the prefix, which is fine
 * for a single Redis (or a primary with replicas) but not for Redis Cluster.
 *
 * Outages: the server keeps running. node-redis reconnects with a capped
 * exponential backoff; meanwhile writes are queued in memory (in order,
 * bounded) and resolve at once, and are replayed in order once Redis is back;
 * reads reject at once with a RedisUnavailableError. A Redis that stays
 * connected but stops answering (a hung server, a partition that sends no
 * reset) is treated the same once a command has waited `replyTimeoutMs`:
 * node-redis has no timeout for a command already sent, and without one every
 * job start would wait on it.
 *
 * @module
 */
import { Outbox } from "./outbox.ts";
import {
  ClientClosedError,
  ClientOfflineError,
  type CommandParser,
  ConnectionTimeoutError,
  createClient,
  defineScript,
  DisconnectsClientError,
  ErrorReply,
  ReconnectStrategyError,
  type RedisArgument,
  SocketClosedUnexpectedlyError,
  SocketTimeoutError,
  TimeoutError,
} from "redis";
import { JobStatus } from "../protocol.ts";
import type { Logger } from "../log.ts";
import { silentLogger } from "../log.ts";
import { decodeCursor, encodeCursor } from "./cursor.ts";
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

export interface RedisStoreOptions {
  /** Prepended to every key, so several deployments can share one Redis. @default "cc-executor:" */
  prefix?: string;
  /** @default Date.now */
  now?: () => number;
  /** Writes held while Redis is unreachable; past this the oldest are dropped (and logged). @default 10000 */
  maxPendingWrites?: number;
  /** @default silentLogger */
  logger?: Logger;
  /** How long `open` keeps trying to reach Redis before it gives up. @default 5000 */
  connectTimeoutMs?: number;
  /**
   * How long a command may go unanswered before Redis counts as stalled: the caller's write is
   * then queued (it resolves), reads fail, and later writes queue until Redis answers again. A
   * connection silent for 3x this long is replaced (node-redis's socketTimeout, kept from firing
   * on a healthy idle connection by a PING every `replyTimeoutMs`). @default 2000
   */
  replyTimeoutMs?: number;
  /**
   * A local SQLite file where job (and metrics) writes waiting for Redis are also kept, so a
   * server killed during an outage does not lose them; the next store opened on it sends them
   * first.
   * @default none: queued writes live in memory only
   */
  outboxPath?: string;
}

/** A read while Redis cannot be reached. */
export class RedisUnavailableError extends Error {
  constructor(location: string, cause: string) {
    super(`Redis at ${location} is unreachable: ${cause}`);
    this.name = "RedisUnavailableError";
  }
}

/** Durations kept per shape, as many as the SQLite store's percentiles look at. */
const DURATIONS_KEPT = 1000;
/** Job ids examined per round trip by a `search`. */
const SEARCH_PAGE = 500;
/** Finished jobs deleted per round trip (one script call) by `prune`. */
const PRUNE_BATCH = 500;
/** Queued writes sent per round trip when replaying after an outage. */
const REPLAY_BATCH = 100;
/** The longest a single connection attempt may take. */
const CONNECT_ATTEMPT_MS = 5000;
/** How long `[Symbol.asyncDispose]` waits for queued writes to land. */
const FLUSH_ON_CLOSE_MS = 2000;
/** node-redis's reconnect delay: 50 ms doubling up to 5 s. */
const RECONNECT_MIN_MS = 50;
const RECONNECT_MAX_MS = 5000;

const RECORD_STATUSES: readonly RecordStatus[] = [...JobStatus.options, "interrupted"];

/**
 * How each field is kept in the job hash. Strings are stored as they are, numbers in their
 * shortest exact decimal form, booleans as 1/0, hooks as JSON; a null field is left out of the
 * hash. Absent fields decode to the SQLite store's column defaults (a record written before
 * retry links has no parent_job_id and no attempt: null and 1).
 */
const FIELDS = {
  job_id: "string",
  command: "string",
  shape: "string",
  cwd: "string?",
  session_id: "string?",
  node_id: "string",
  server_pid: "number",
  started_at: "number",
  timeout_s: "number?",
  timeout_source: "string",
  parent_job_id: "string?",
  attempt: "number",
  status: "string",
  pid: "number?",
  pgid: "number?",
  ended_at: "number?",
  duration_ms: "number?",
  exit_code: "number?",
  signal: "string?",
  reason: "string?",
  bytes_stdout: "number",
  bytes_stderr: "number",
  truncated: "boolean",
  output_head: "string",
  output_tail: "string",
  hooks: "json",
} as const satisfies Record<
  keyof JobRecord,
  "string" | "string?" | "number" | "number?" | "boolean" | "json"
>;

type Field = keyof typeof FIELDS;
const ALL_FIELDS = Object.keys(FIELDS) as Field[];
/** What `list` reads: everything but the output. */
const LIST_FIELDS: Field[] = ALL_FIELDS.filter((f) => f !== "output_head" && f !== "output_tail");

/** HSET arguments (field, value pairs) and the fields to delete (the null ones). */
function encodeFields(values: Partial<JobRecord>): { set: string[]; unset: string[] } {
  const set: string[] = [];
  const unset: string[] = [];
  for (const [field, value] of Object.entries(values) as [Field, unknown][]) {
    if (!Object.hasOwn(FIELDS, field)) continue;
    const kind = FIELDS[field];
    let text: string | undefined;
    if (kind === "json") text = value === null ? undefined : JSON.stringify(value);
    else if (value === null || value === undefined) text = undefined;
    else if (kind === "boolean") text = value ? "1" : "0";
    else text = String(value);
    if (text === undefined) unset.push(field);
    else set.push(field, text);
  }
  return { set, unset };
}

/** Absent fields whose column default is not their kind's. */
const DEFAULTS: Partial<Record<Field, unknown>> = { attempt: 1 };

function decodeField(field: Field, text: string | null | undefined): unknown {
  const kind = FIELDS[field];
  if (text === null || text === undefined) {
    if (Object.hasOwn(DEFAULTS, field)) return DEFAULTS[field];
    switch (kind) {
      case "string":
        return "";
      case "number":
        return 0;
      case "boolean":
        return false;
      default:
        return null;
    }
  }
  switch (kind) {
    case "string":
    case "string?":
      return text;
    case "number":
    case "number?":
      return Number(text);
    case "boolean":
      return text === "1";
    case "json":
      return JSON.parse(text);
  }
}

function decodeRecord(get: (field: Field) => string | null | undefined): JobRecord {
  const record: Record<string, unknown> = {};
  for (const field of ALL_FIELDS) record[field] = decodeField(field, get(field));
  return record as unknown as JobRecord;
}

/** The URL as it may be shown: any password replaced by `***`. */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === "") return url;
    parsed.password = "***";
    return parsed.href;
  } catch {
    return url.replace(/\/\/([^/@]*?):[^/@]*@/, "//$1:***@");
  }
}

/** Byte order of UTF-8, as Redis and SQLite compare strings. */
function compareBytes(a: string, b: string): number {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i]! - y[i]!;
  }
  return x.length - y.length;
}

// Lua helpers shared by the scripts. ARGV[1] is always the key prefix.
const LUA_HELPERS = `
local p = ARGV[1]
local function count_shape(shape, by)
  local n = tonumber(redis.call('ZINCRBY', p .. 'shapes', by, shape))
  if n <= 0 then redis.call('ZREM', p .. 'shapes', shape) end
end
-- Removes a job from its parent's attempts (a record that has a parent).
local function unparent(id, parent)
  if parent then redis.call('ZREM', p .. 'jobs:parent:' .. parent, id) end
end
-- Removes a job from the indexes of its status (not from 'jobs').
local function unindex(id, status, node, shape)
  redis.call('ZREM', p .. 'jobs:status:' .. status, id)
  if status == 'running' then
    redis.call('SREM', p .. 'running:' .. node, id)
  else
    redis.call('ZREM', p .. 'jobs:ended', id)
  end
  if status == 'completed' then count_shape(shape, -1) end
end
`;

/** Script reply: only success matters. */
const numberReply = undefined as unknown as () => number;

function script(body: string) {
  return defineScript({
    SCRIPT: LUA_HELPERS + body,
    NUMBER_OF_KEYS: 1,
    parseCommand(parser: CommandParser, key: RedisArgument, args: RedisArgument[]) {
      parser.pushKey(key);
      parser.pushVariadic(args);
    },
    transformReply: numberReply,
  });
}

const SCRIPTS = {
  // KEYS[1] job hash; ARGV: prefix, id, started_at, node_id, field, value, ...
  // Replaces any record of the same id, as the SQLite store's INSERT OR REPLACE does. The parent
  // and attempt are read back from the fields rather than passed apart, so a write an older
  // server left in the outbox (which has neither) replays as it was meant.
  jobStarted: script(`
local id = ARGV[2]
local old = redis.call('HMGET', KEYS[1], 'status', 'node_id', 'shape', 'parent_job_id')
if old[1] then
  unindex(id, old[1], old[2], old[3])
  unparent(id, old[4])
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('ZADD', p .. 'jobs', ARGV[3], id)
redis.call('ZADD', p .. 'jobs:status:running', ARGV[3], id)
redis.call('SADD', p .. 'running:' .. ARGV[4], id)
local link = redis.call('HMGET', KEYS[1], 'parent_job_id', 'attempt')
if link[1] then
  redis.call('ZADD', p .. 'jobs:parent:' .. link[1], link[2] or 1, id)
end
return 1
`),
  // KEYS[1] job hash; ARGV: prefix, pid, pgid. A job that is not on record stays unknown.
  jobSpawned: script(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'pid', ARGV[2], 'pgid', ARGV[3])
return 1
`),
  // KEYS[1] job hash; ARGV: prefix, id, status, ended_at, duration_ms, #unset, unset..., field, value, ...
  // The shape's statistics count a job once, however often it is ended.
  jobEnded: script(`
local id, status, ended, duration = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local old = redis.call('HMGET', KEYS[1], 'status', 'node_id', 'shape', 'started_at')
if not old[1] then return 0 end
unindex(id, old[1], old[2], old[3])
redis.call('ZADD', p .. 'jobs:status:' .. status, old[4], id)
if status == 'running' then
  redis.call('SADD', p .. 'running:' .. old[2], id)
else
  redis.call('ZADD', p .. 'jobs:ended', ended, id)
end
local nunset = tonumber(ARGV[6])
if nunset > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, 7, 6 + nunset)) end
redis.call('HSET', KEYS[1], unpack(ARGV, 7 + nunset))
if status == 'completed' then
  count_shape(old[3], 1)
  if old[1] ~= 'completed' then
    redis.call('LPUSH', p .. 'durations:' .. old[3], duration)
    redis.call('LTRIM', p .. 'durations:' .. old[3], 0, ${DURATIONS_KEPT - 1})
  end
end
return 1
`),
  // KEYS[1] job hash; ARGV: prefix, id, ended_at, reason, status (interrupted, the default, or
  // lost). Only a running job changes.
  markInterrupted: script(`
local id, ended = ARGV[2], ARGV[3]
local status = ARGV[5] or 'interrupted'
local old = redis.call('HMGET', KEYS[1], 'status', 'node_id', 'shape', 'started_at')
if old[1] ~= 'running' then return 0 end
unindex(id, old[1], old[2], old[3])
redis.call('ZADD', p .. 'jobs:status:' .. status, old[4], id)
redis.call('ZADD', p .. 'jobs:ended', ended, id)
redis.call('HSET', KEYS[1], 'status', status, 'ended_at', ended,
  'duration_ms', string.format('%.17g', tonumber(ended) - tonumber(old[4])), 'reason', ARGV[4])
return 1
`),
  // KEYS[1] the jobs:ended index; ARGV: prefix, before, batch. Returns how many were deleted,
  // negated when the batch was not full (nothing older is left).
  prune: script(`
local ids = redis.call('ZRANGE', KEYS[1], '-inf', '(' .. ARGV[2], 'BYSCORE', 'LIMIT', 0, ARGV[3])
local deleted = 0
for _, id in ipairs(ids) do
  local key = p .. 'job:' .. id
  local old = redis.call('HMGET', key, 'status', 'node_id', 'shape', 'parent_job_id')
  if not old[1] then
    redis.call('ZREM', KEYS[1], id)
  elseif old[1] ~= 'running' then
    unindex(id, old[1], old[2], old[3])
    unparent(id, old[4])
    redis.call('ZREM', p .. 'jobs', id)
    redis.call('DEL', key)
    deleted = deleted + 1
  end
end
if #ids < tonumber(ARGV[3]) then return -deleted - 1 end
return deleted
`),
  // KEYS[1] the shape's metrics hash; ARGV: prefix, shape, status, duration_ms, ended_at.
  // The sums are done here in doubles and written as %.17g (not HINCRBYFLOAT, whose long double
  // arithmetic rounds differently), so they come out as SQLite's REAL columns do.
  recordMetrics: script(`
local shape, status = ARGV[2], ARGV[3]
local duration, ended = tonumber(ARGV[4]), tonumber(ARGV[5])
local old = redis.call('HMGET', KEYS[1], 'total_ms', 'max_ms', 'last_at')
local total = (tonumber(old[1]) or 0) + duration
local max = tonumber(old[2])
if not max or duration > max then max = duration end
local last = tonumber(old[3])
if not last or ended > last then last = ended end
redis.call('HINCRBY', KEYS[1], 'runs', 1)
redis.call('HINCRBY', KEYS[1], 'status:' .. status, 1)
redis.call('HSET', KEYS[1], 'total_ms', string.format('%.17g', total),
  'max_ms', string.format('%.17g', max), 'last_at', string.format('%.17g', last))
redis.call('ZINCRBY', p .. 'metrics', 1, shape)
return 1
`),
  // KEYS[1] the template_stats hash; ARGV: prefix, template, success (1 or 0), at.
  // One hash for every template: there are a handful, and templateStats reads them in one HGETALL.
  recordTemplateOutcome: script(`
local name, at = ARGV[2], tonumber(ARGV[4])
redis.call('HINCRBY', KEYS[1], 'uses:' .. name, 1)
redis.call('HINCRBY', KEYS[1], 'successes:' .. name, tonumber(ARGV[3]))
local last = tonumber(redis.call('HGET', KEYS[1], 'last_used_at:' .. name))
if not last or at > last then
  redis.call('HSET', KEYS[1], 'last_used_at:' .. name, string.format('%.17g', at))
end
return 1
`),
};

function newClient(
  url: string,
  replyTimeoutMs: number,
  reconnectStrategy: (retries: number, cause: Error) => number | Error,
) {
  return createClient({
    url,
    // Reads fail at once during an outage; writes have their own queue (see #write).
    disableOfflineQueue: true,
    scripts: SCRIPTS,
    // A connection that hears nothing for 3 deadlines is replaced; the PINGs keep a healthy idle
    // one talking. (Once Redis stalls the store stops sending, so the silence does come.)
    pingInterval: replyTimeoutMs,
    socket: {
      reconnectStrategy,
      connectTimeout: Math.min(CONNECT_ATTEMPT_MS, replyTimeoutMs * 3),
      socketTimeout: replyTimeoutMs * 3,
    },
  });
}
type Client = ReturnType<typeof newClient>;

/** A write waiting for Redis, in call order. */
interface PendingWrite {
  seq: number;
  /** For logs: "jobEnded a1b2". */
  what: string;
  run: () => Promise<unknown>;
  /** A job or metrics write: kept in the outbox while it waits, so a crash does not lose it. */
  durable?: { script: DurableScript; key: string; args: string[] };
  /** Its outbox entry, while it has one. */
  outboxId?: number;
}

/** The scripts whose writes go through the outbox. */
type DurableScript =
  | "jobStarted"
  | "jobSpawned"
  | "jobEnded"
  | "markInterrupted"
  | "recordMetrics"
  | "recordTemplateOutcome";

/** What `#deadline` resolves to when Redis has not answered in time. */
const LATE = Symbol("late");

/**
 * Errors that mean "Redis could not be asked" (socket closed, offline, not yet loaded), as
 * opposed to Redis refusing the command.
 */
function isUnreachable(error: unknown): boolean {
  if (error instanceof ErrorReply) {
    return /^(LOADING|BUSY|READONLY|MASTERDOWN|TRYAGAIN)\b/.test(error.message);
  }
  if (
    error instanceof ClientOfflineError || error instanceof ClientClosedError ||
    error instanceof DisconnectsClientError || error instanceof SocketClosedUnexpectedlyError ||
    error instanceof ConnectionTimeoutError || error instanceof SocketTimeoutError ||
    error instanceof TimeoutError || error instanceof ReconnectStrategyError
  ) return true;
  // The socket's own errors: ECONNRESET, EPIPE, ECONNREFUSED...
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^E[A-Z]+$/.test(code);
}

/** Awaits one round trip of a read; rejects with RedisUnavailableError when it is late. */
type Ask = <T>(sent: Promise<T>) => Promise<T>;

export class RedisStore implements Store {
  readonly backend = "redis" as const;
  /** The URL without its password. */
  readonly location: string;
  readonly prefix: string;
  #client: Client;
  #now: () => number;
  #logger: Logger;
  #maxPending: number;
  #replyTimeoutMs: number;
  #pending: PendingWrite[] = [];
  #seq = 0;
  #dropped = 0;
  /** Writes sent directly (Redis was ready), not yet answered. */
  #inFlight = new Set<Promise<unknown>>();
  /** Commands (or replays) unanswered past the deadline: while any is, Redis is stalled. */
  #late = new Set<Promise<unknown>>();
  #draining: Promise<void> | null = null;
  /** Why Redis is unreachable, while it is; null while connected. */
  #outage: string | null = "not connected yet";
  #everReady = false;
  #connectDeadline = 0;
  #closed = false;
  /** Woken when Redis may be usable again (see #flush). */
  #wakers = new Set<() => void>();

  readonly #outbox: Outbox | null;

  private constructor(url: string, options: RedisStoreOptions) {
    this.location = redactRedisUrl(url);
    this.prefix = options.prefix ?? "cc-executor:";
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger ?? silentLogger;
    this.#maxPending = options.maxPendingWrites ?? 10_000;
    this.#replyTimeoutMs = options.replyTimeoutMs ?? 2000;
    try {
      this.#client = newClient(
        url,
        this.#replyTimeoutMs,
        (retries, cause) => this.#reconnectDelay(retries, cause),
      );
    } catch (error) {
      // The parser's message may quote the URL, password included.
      throw new Error(
        `Invalid Redis URL ${this.location}: expected redis://[[user]:password@]host[:port][/db]`,
        { cause: error instanceof Error ? error.name : undefined },
      );
    }
    this.#client.on("error", (error: Error) => this.#onError(error));
    this.#client.on("ready", () => this.#onReady());
    this.#outbox = options.outboxPath ? new Outbox(options.outboxPath) : null;
  }

  /**
   * Connects; rejects when Redis cannot be reached within `connectTimeoutMs`. Once open, the
   * store survives outages (see the module documentation).
   *
   * @example
   * ```ts
   * await using store = await RedisStore.open("redis://127.0.0.1:6379", { prefix: "ci:" });
   * const page = await store.list({ limit: 20 });
   * ```
   */
  static async open(url: string, options: RedisStoreOptions = {}): Promise<RedisStore> {
    const store = new RedisStore(url, options);
    const timeoutMs = options.connectTimeoutMs ?? 5000;
    store.#connectDeadline = performance.now() + timeoutMs;
    try {
      await store.#client.connect();
    } catch {
      if (store.#client.isOpen) store.#client.destroy();
      store.#outbox?.[Symbol.dispose]();
      throw new Error(
        `Cannot connect to Redis at ${store.location} within ${timeoutMs} ms: ${store.#outage}`,
      );
    }
    store.#recover();
    return store;
  }

  /** Capped exponential backoff; while opening, gives up at the connect deadline. */
  #reconnectDelay(retries: number, cause: Error): number | Error {
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** Math.min(retries, 16));
    if (this.#closed) return cause;
    if (this.#everReady) return delay;
    const left = this.#connectDeadline - performance.now();
    return left <= 0 ? cause : Math.min(delay, left);
  }

  #onError(error: Error): void {
    // node-redis reports every failed reconnect attempt; an outage is logged once.
    if (this.#client.isReady) {
      this.#logger.debug(`store: Redis client error`, { error: error.message });
      return;
    }
    const first = this.#outage === null;
    this.#outage = error.message || error.name;
    if (first && !this.#closed) {
      this.#logger.warn(
        `store: Redis at ${this.location} is unreachable; writes are queued until it is back`,
        { error: this.#outage, max_pending_writes: this.#maxPending },
      );
    }
  }

  #onReady(): void {
    if (this.#everReady && this.#outage !== null) {
      this.#logger.info(`store: Redis at ${this.location} is back`, {
        pending_writes: this.#pending.length,
      });
    }
    this.#everReady = true;
    this.#outage = null;
    this.#resume();
  }

  /** Connected and answering: commands may be sent. */
  #usable(): boolean {
    return this.#client.isReady && this.#late.size === 0;
  }

  /** Redis may be usable again: replay what is queued, wake #flush. */
  #resume(): void {
    if (this.#closed) return;
    if (this.#pending.length > 0 && this.#usable()) this.#drain();
    for (const wake of this.#wakers) wake();
    this.#wakers.clear();
  }

  /**
   * `sent`'s outcome, or LATE when Redis has not answered within the deadline; Redis then counts
   * as stalled until `sent` settles.
   */
  async #deadline<T>(sent: Promise<T>): Promise<T | typeof LATE> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<typeof LATE>((resolve) => {
      timer = setTimeout(() => resolve(LATE), this.#replyTimeoutMs);
    });
    try {
      const outcome = await Promise.race([sent, late]);
      if (outcome === LATE) this.#stalled(sent);
      return outcome;
    } finally {
      clearTimeout(timer);
    }
  }

  #stalled(sent: Promise<unknown>): void {
    if (this.#late.size === 0 && !this.#closed) {
      this.#logger.warn(
        `store: Redis at ${this.location} has not answered for ${this.#replyTimeoutMs} ms; writes are queued until it does`,
        { pending_writes: this.#pending.length },
      );
    }
    this.#late.add(sent);
    const settled = () => {
      this.#late.delete(sent);
      if (this.#late.size === 0) this.#resume();
    };
    sent.then(settled, settled);
  }

  // ---- the write path ---------------------------------------------------------------------

  /**
   * Runs a write now when Redis is usable and nothing is queued before it; otherwise queues it
   * and resolves to `queued` at once. A write cut off by an outage is queued again (in its
   * place), and one left unanswered past the deadline resolves to `queued` while it waits, so a
   * caller never waits for Redis to come back.
   */
  async #write<T>(
    what: string,
    run: () => Promise<T>,
    queued: T,
    durable?: PendingWrite["durable"],
  ): Promise<T> {
    if (this.#closed) throw new Error(`Cannot ${what}: the Redis store is closed`);
    const op: PendingWrite = { seq: this.#seq++, what, run, durable };
    if (!this.#usable() || this.#pending.length > 0 || this.#draining) {
      this.#enqueue(op);
      return queued;
    }
    let callerWaits = true;
    const sent = run();
    this.#inFlight.add(sent);
    const outcome = sent.then(
      (value) => value,
      (error) => {
        if (isUnreachable(error)) {
          this.#enqueue(op);
          return queued;
        }
        if (callerWaits) throw error;
        this.#refused(op, error);
        return queued;
      },
    ).finally(() => this.#inFlight.delete(sent));
    const answer = await this.#deadline(outcome);
    if (answer !== LATE) return answer;
    callerWaits = false;
    return queued;
  }

  /** A queued write has been sent (or given up on): its outbox entry goes. */
  #landed(op: PendingWrite): void {
    if (op.outboxId === undefined || !this.#outbox) return;
    try {
      this.#outbox.remove(op.outboxId);
    } catch (error) {
      this.#logger.warn(`store: cannot clear an outbox entry: ${op.what}`, {
        error: (error as Error).message,
      });
    }
    op.outboxId = undefined;
  }

  /** Queues what a previous server left in the outbox, ahead of anything new. */
  #recover(): void {
    if (!this.#outbox) return;
    const entries = this.#outbox.entries();
    if (entries.length === 0) return;
    this.#logger.warn(`store: sending ${entries.length} writes a previous server left queued`, {
      outbox: this.#outbox.path,
    });
    for (const entry of entries) {
      const script = entry.script as DurableScript;
      this.#enqueue({
        seq: this.#seq++,
        what: `${script} (from the outbox)`,
        run: () => this.#client[script](entry.key, entry.args),
        durable: { script, key: entry.key, args: entry.args },
        outboxId: entry.id,
      });
    }
  }

  #refused(op: PendingWrite, error: unknown): void {
    this.#dropped++;
    this.#logger.error(`store: Redis refused a write: ${op.what}`, {
      error: (error as Error)?.message ?? String(error),
      dropped_writes: this.#dropped,
    });
  }

  #enqueue(op: PendingWrite): void {
    if (op.durable && op.outboxId === undefined && this.#outbox) {
      try {
        op.outboxId = this.#outbox.add(op.durable.script, op.durable.key, op.durable.args);
      } catch (error) {
        this.#logger.error(`store: cannot keep a queued write in the outbox: ${op.what}`, {
          outbox: this.#outbox.path,
          error: (error as Error).message,
        });
      }
    }
    // Kept in call order: a write cut off in flight goes back before later ones.
    let at = this.#pending.length;
    while (at > 0 && this.#pending[at - 1]!.seq > op.seq) at--;
    this.#pending.splice(at, 0, op);
    while (this.#pending.length > this.#maxPending) {
      const dropped = this.#pending.shift()!;
      this.#landed(dropped);
      this.#dropped++;
      this.#logger.warn(
        `store: dropped a write for Redis at ${this.location}: ${dropped.what} (more than ${this.#maxPending} writes were waiting)`,
        { dropped_writes: this.#dropped },
      );
    }
    if (this.#usable()) this.#drain();
  }

  /** Replays queued writes in order while Redis is usable; one drain at a time. */
  #drain(): Promise<void> {
    this.#draining ??= this.#replay()
      .catch((error) =>
        this.#logger.error("store: replaying writes failed", { error: String(error) })
      )
      .finally(() => {
        this.#draining = null;
        this.#resume();
      });
    return this.#draining;
  }

  async #replay(): Promise<void> {
    // Writes sent before the outage settle first: the ones cut off join the queue in order.
    await Promise.allSettled(this.#inFlight);
    while (this.#pending.length > 0 && this.#usable()) {
      const batch = this.#pending.slice(0, REPLAY_BATCH);
      // Sent together (pipelined, in order); replies come back in order, so the writes that
      // landed are a prefix of the batch, up to the first one the connection lost.
      const sent = Promise.allSettled(batch.map(async (op) => await op.run()));
      const answer = await this.#deadline(sent);
      const results = answer === LATE ? await sent : answer;
      let landed = 0;
      for (const [i, result] of results.entries()) {
        if (result.status === "rejected") {
          if (isUnreachable(result.reason)) break;
          this.#refused(batch[i]!, result.reason);
        }
        landed++;
      }
      const done = new Set(batch.slice(0, landed));
      for (const op of done) this.#landed(op);
      this.#pending = this.#pending.filter((op) => !done.has(op));
      if (landed < batch.length) return;
    }
  }

  // ---- the read path ----------------------------------------------------------------------

  /**
   * Runs a read unless Redis is unreachable or stalled; each of its round trips (`ask`) must be
   * answered within the deadline. Writes queued during an outage land first.
   */
  async #read<T>(run: (client: Client, ask: Ask) => Promise<T>): Promise<T> {
    if (this.#closed) throw new Error("Cannot read: the Redis store is closed");
    const unavailable = (why: string) => new RedisUnavailableError(this.location, why);
    const lateWhy = `no answer within ${this.#replyTimeoutMs} ms`;
    if (!this.#client.isReady) throw unavailable(this.#outage ?? "not connected");
    if (this.#late.size > 0) throw unavailable(lateWhy);
    if (this.#draining && await this.#deadline(this.#draining) === LATE) throw unavailable(lateWhy);
    const ask: Ask = async (sent) => {
      const answer = await this.#deadline(sent);
      if (answer === LATE) throw unavailable(lateWhy);
      return answer;
    };
    try {
      return await run(this.#client, ask);
    } catch (error) {
      if (!isUnreachable(error)) throw error;
      throw unavailable((error as Error).message);
    }
  }

  #jobKey(jobId: string): string {
    return `${this.prefix}job:${jobId}`;
  }

  #statusKey(status: RecordStatus): string {
    return `${this.prefix}jobs:status:${status}`;
  }

  // ---- Store ------------------------------------------------------------------------------

  jobStarted(start: JobStart): Promise<void> {
    let links;
    try {
      links = jobLinks(start);
    } catch (error) {
      return Promise.reject(error);
    }
    // A new hash: its null fields are simply absent.
    const { set } = encodeFields({ ...start, ...links, status: "running" });
    const args = [this.prefix, start.job_id, String(start.started_at), start.node_id, ...set];
    const key = this.#jobKey(start.job_id);
    return this.#write(
      `jobStarted ${start.job_id}`,
      async () => {
        await this.#client.jobStarted(key, args);
      },
      undefined,
      { script: "jobStarted", key, args },
    );
  }

  jobSpawned(jobId: string, spawned: JobSpawned): Promise<void> {
    const args = [this.prefix, String(spawned.pid), String(spawned.pgid)];
    const key = this.#jobKey(jobId);
    return this.#write(
      `jobSpawned ${jobId}`,
      async () => {
        await this.#client.jobSpawned(key, args);
      },
      undefined,
      { script: "jobSpawned", key, args },
    );
  }

  jobEnded(jobId: string, end: JobEnd): Promise<void> {
    const { set, unset } = encodeFields({ ...end, hooks: end.hooks ?? null });
    const args = [
      this.prefix,
      jobId,
      end.status,
      String(end.ended_at),
      String(end.duration_ms),
      String(unset.length),
      ...unset,
      ...set,
    ];
    const key = this.#jobKey(jobId);
    return this.#write(
      `jobEnded ${jobId}`,
      async () => {
        await this.#client.jobEnded(key, args);
      },
      undefined,
      { script: "jobEnded", key, args },
    );
  }

  get(jobId: string): Promise<JobRecord | null> {
    return this.#read(async (client, ask) => {
      const hash = await ask(client.hGetAll(this.#jobKey(jobId)));
      if (hash.job_id === undefined) return null;
      return decodeRecord((field) => hash[field]);
    });
  }

  /**
   * Newest first, from the `jobs` index (or the status's own index), bounded below by `since`.
   * Without `search` a page costs two round trips whatever the history's size. With `search`
   * the index is walked `SEARCH_PAGE` ids at a time (two round trips each: the ids, then their
   * commands) until `limit` matches or the end: a search that matches little of a large
   * history reads every command in range, so narrow it with `since` or `status`.
   */
  list(query: ListQuery): Promise<ListPage> {
    const cursor = query.cursor ? decodeCursor(query.cursor) : undefined;
    if (query.parent_job_id !== undefined) return this.#listAttempts(query, cursor);
    return this.#read(async (client, ask) => {
      const index = query.status ? this.#statusKey(query.status) : `${this.prefix}jobs`;
      const min = query.since ?? -Infinity;
      const want = Math.max(0, query.limit) + 1;
      const needle = query.search ? query.search.toLowerCase() : undefined;
      const found: string[] = [];
      let from = cursor ? { id: cursor.jobId, score: cursor.startedAt } : undefined;
      while (found.length < want) {
        const count = needle === undefined ? want - found.length : SEARCH_PAGE;
        const page = await ask(this.#after(client, index, from, min, count));
        if (needle === undefined) found.push(...page.map((entry) => entry.id));
        else {
          const commands = await ask(Promise.all(
            page.map((entry) => client.hGet(this.#jobKey(entry.id), "command")),
          ));
          page.forEach((entry, i) => {
            if (commands[i]?.toLowerCase().includes(needle)) found.push(entry.id);
          });
        }
        if (page.length < count) break;
        from = page.at(-1);
      }
      const rows = await ask(Promise.all(
        found.slice(0, want).map((id) => client.hmGet(this.#jobKey(id), LIST_FIELDS)),
      ));
      const records = rows
        // A job pruned between the two reads is skipped.
        .filter((row) => row[0] !== null)
        .map((row) => {
          const record = decodeRecord((field) => row[LIST_FIELDS.indexOf(field)]);
          return { ...record, output_head: "", output_tail: "" };
        });
      const jobs = records.slice(0, Math.max(0, query.limit));
      const last = jobs.at(-1);
      return {
        jobs,
        next_cursor: records.length > jobs.length && last
          ? encodeCursor(last.started_at, last.job_id)
          : null,
      };
    });
  }

  /**
   * A parent's attempts from its `jobs:parent:<id>` index, by attempt then job id (the order of
   * a sorted set's equal scores), paged by that pair. The other filters are applied to the
   * records read: without them a page costs two round trips; with them the index (a job's few
   * attempts) is read `SEARCH_PAGE` at a time until `limit` match.
   */
  #listAttempts(
    query: ListQuery,
    cursor: { startedAt: number; jobId: string } | undefined,
  ): Promise<ListPage> {
    const index = `${this.prefix}jobs:parent:${query.parent_job_id}`;
    const needle = query.search ? query.search.toLowerCase() : undefined;
    const filtered = query.status !== undefined || query.since !== undefined ||
      needle !== undefined;
    const matches = (record: JobRecord) =>
      (query.status === undefined || record.status === query.status) &&
      (query.since === undefined || record.started_at >= query.since) &&
      (needle === undefined || record.command.toLowerCase().includes(needle));
    return this.#read(async (client, ask) => {
      const want = Math.max(0, query.limit) + 1;
      const found: JobRecord[] = [];
      let from = cursor ? { id: cursor.jobId, score: cursor.startedAt } : undefined;
      while (found.length < want) {
        const count = filtered ? SEARCH_PAGE : want - found.length;
        const page = await ask(this.#attemptsAfter(client, index, from, count));
        const rows = await ask(Promise.all(
          page.map((entry) => client.hmGet(this.#jobKey(entry.id), LIST_FIELDS)),
        ));
        for (const row of rows) {
          // A job pruned between the two reads is skipped.
          if (row[0] === null) continue;
          const record = decodeRecord((field) => row[LIST_FIELDS.indexOf(field)]);
          if (matches(record)) found.push({ ...record, output_head: "", output_tail: "" });
        }
        if (page.length < count) break;
        from = page.at(-1);
      }
      const jobs = found.slice(0, Math.max(0, query.limit));
      const last = jobs.at(-1);
      return {
        jobs,
        next_cursor: found.length > jobs.length && last
          ? encodeCursor(last.attempt, last.job_id)
          : null,
      };
    });
  }

  /**
   * Up to `count` entries of a parent's attempts index after position `from` in its order
   * (attempt, then job id, ascending). One round trip: the entries of `from`'s attempt that sort
   * after it, and the later attempts.
   */
  async #attemptsAfter(
    client: Client,
    index: string,
    from: { id: string; score: number } | undefined,
    count: number,
  ): Promise<{ id: string; score: number }[]> {
    const later = (min: string) =>
      client.zRangeWithScores(index, min, "+inf", {
        BY: "SCORE",
        LIMIT: { offset: 0, count },
      }).then((entries) => entries.map((e) => ({ id: e.value, score: e.score })));
    if (from === undefined) return await later("-inf");
    const [ties, rest] = await Promise.all([
      client.zRange(index, from.score, from.score, { BY: "SCORE" }),
      later(`(${from.score}`),
    ]);
    const after = ties
      .filter((id) => compareBytes(id, from.id) > 0)
      .map((id) => ({ id, score: from.score }));
    return [...after, ...rest].slice(0, count);
  }

  /**
   * Up to `count` entries of `index` after position `from` in newest-first order (started_at
   * desc, then job id desc), with a score of at least `min`. One round trip: the entries that
   * share `from`'s start time (few: jobs started in the same millisecond) and the older ones.
   */
  async #after(
    client: Client,
    index: string,
    from: { id: string; score: number } | undefined,
    min: number,
    count: number,
  ): Promise<{ id: string; score: number }[]> {
    const older = (max: string) =>
      client.zRangeWithScores(index, max, min, {
        BY: "SCORE",
        REV: true,
        LIMIT: { offset: 0, count },
      }).then((entries) => entries.map((e) => ({ id: e.value, score: e.score })));
    if (from === undefined) return await older("+inf");
    if (from.score < min) return [];
    const [ties, rest] = await Promise.all([
      client.zRange(index, from.score, from.score, { BY: "SCORE", REV: true }),
      older(`(${from.score}`),
    ]);
    const after = ties
      .filter((id) => compareBytes(id, from.id) < 0)
      .map((id) => ({ id, score: from.score }));
    return [...after, ...rest].slice(0, count);
  }

  orphans(nodeId: string, serverPid: number): Promise<JobRecord[]> {
    return this.#read(async (client, ask) => {
      const ids = await ask(client.sMembers(`${this.prefix}running:${nodeId}`));
      const hashes = await ask(Promise.all(ids.map((id) => client.hGetAll(this.#jobKey(id)))));
      return hashes
        .filter((hash) => hash.job_id !== undefined)
        .map((hash) => decodeRecord((field) => hash[field]))
        .filter((r) => r.status === "running" && r.node_id === nodeId && r.server_pid !== serverPid)
        .sort((a, b) => a.started_at - b.started_at || compareBytes(a.job_id, b.job_id));
    });
  }

  markInterrupted(
    jobId: string,
    endedAt: number,
    reason: string,
    status: "interrupted" | "lost" = "interrupted",
  ): Promise<void> {
    const args = [this.prefix, jobId, String(endedAt), reason, status];
    const key = this.#jobKey(jobId);
    return this.#write(
      `markInterrupted ${jobId}`,
      async () => {
        await this.#client.markInterrupted(key, args);
      },
      undefined,
      { script: "markInterrupted", key, args },
    );
  }

  durations(shape: string, limit: number): Promise<number[]> {
    return this.#read(async (client, ask) => {
      if (limit === 0) return [];
      const values = await ask(client.lRange(`${this.prefix}durations:${shape}`, 0, limit - 1));
      return values.map(Number);
    });
  }

  stats(options: { shapes: number }): Promise<StoreStats> {
    return this.#read(async (client, ask) => {
      const counts = await ask(Promise.all(
        RECORD_STATUSES.map((status) => client.zCard(this.#statusKey(status))),
      ));
      const by_status: StoreStats["by_status"] = {};
      RECORD_STATUSES.forEach((status, i) => {
        if (counts[i]! > 0) by_status[status] = counts[i]!;
      });
      const shapesKey = `${this.prefix}shapes`;
      const n = options.shapes;
      let top: { value: string; score: number }[] = [];
      if (n !== 0) {
        top = await ask(client.zRangeWithScores(shapesKey, 0, n < 0 ? -1 : n - 1, { REV: true }));
        // Shapes tied with the last one compete on their name, as in SQLite's ORDER BY n, shape.
        if (n > 0 && top.length === n) {
          top = await ask(client.zRangeWithScores(shapesKey, top.at(-1)!.score, "+inf", {
            BY: "SCORE",
          }));
        }
      }
      top.sort((a, b) => b.score - a.score || compareBytes(a.value, b.value));
      if (n > 0) top = top.slice(0, n);
      const lists = await ask(Promise.all(
        top.map(({ value }) => client.lRange(`${this.prefix}durations:${value}`, 0, -1)),
      ));
      const by_shape = top.map(({ value: shape, score: count }, i) => {
        const durations = lists[i]!.map(Number);
        return {
          shape,
          count,
          p50_ms: percentile(durations, 50),
          p95_ms: percentile(durations, 95),
        };
      });
      return { by_status, by_shape };
    });
  }

  /**
   * One script call: the counts, the sums and the listing index change together. Queued (and kept
   * in the outbox) like a job write while Redis is unreachable. A write replayed after its reply
   * was lost counts the run twice: these are statistics, and the outage is logged.
   */
  recordMetrics(sample: MetricsSample): Promise<void> {
    try {
      checkMetricsSample(sample);
    } catch (error) {
      return Promise.reject(error);
    }
    const key = `${this.prefix}metrics:${sample.shape}`;
    const args = [
      this.prefix,
      sample.shape,
      sample.status,
      String(sample.duration_ms),
      String(sample.ended_at),
    ];
    return this.#write(
      `recordMetrics ${sample.shape}`,
      async () => {
        await this.#client.recordMetrics(key, args);
      },
      undefined,
      { script: "recordMetrics", key, args },
    );
  }

  /** Two round trips (three when shapes tie at the cut), whatever the number of shapes. */
  metrics(limit: number): Promise<ShapeMetricsRecord[]> {
    return this.#read(async (client, ask) => {
      if (limit <= 0) return [];
      const index = `${this.prefix}metrics`;
      let top = await ask(client.zRangeWithScores(index, 0, limit - 1, { REV: true }));
      if (top.length === limit) {
        // REV lists shapes tied on runs in reverse byte order, but the ones that make the cut are
        // the first in byte order (SQLite's ORDER BY runs DESC, shape): ask for those directly,
        // as many as are left, rather than for every shape with that many runs.
        const cut = top.at(-1)!.score;
        const above = top.filter((entry) => entry.score > cut);
        const tied = await ask(client.zRange(index, cut, cut, {
          BY: "SCORE",
          LIMIT: { offset: 0, count: limit - above.length },
        }));
        top = [...above, ...tied.map((value) => ({ value, score: cut }))];
      }
      top.sort((a, b) => b.score - a.score || compareBytes(a.value, b.value));
      const hashes = await ask(Promise.all(
        top.map(({ value }) => client.hGetAll(`${this.prefix}metrics:${value}`)),
      ));
      return top.flatMap(({ value: shape }, i) => {
        const hash = hashes[i]!;
        if (hash.runs === undefined) return [];
        const by_status: Record<string, number> = {};
        for (const [field, count] of Object.entries(hash)) {
          if (field.startsWith("status:")) by_status[field.slice("status:".length)] = Number(count);
        }
        return [{
          shape,
          runs: Number(hash.runs),
          by_status,
          total_ms: Number(hash.total_ms),
          max_ms: Number(hash.max_ms),
          last_at: Number(hash.last_at),
        }];
      });
    });
  }

  /**
   * One script call. Queued (and kept in the outbox) like a job write while Redis is unreachable;
   * as with the metrics, a write replayed after its reply was lost counts the retry twice.
   */
  recordTemplateOutcome(outcome: TemplateOutcome): Promise<void> {
    try {
      checkTemplateOutcome(outcome);
    } catch (error) {
      return Promise.reject(error);
    }
    const key = `${this.prefix}template_stats`;
    const args = [this.prefix, outcome.template, outcome.success ? "1" : "0", String(outcome.at)];
    return this.#write(
      `recordTemplateOutcome ${outcome.template}`,
      async () => {
        await this.#client.recordTemplateOutcome(key, args);
      },
      undefined,
      { script: "recordTemplateOutcome", key, args },
    );
  }

  /** One round trip: the whole hash. */
  templateStats(): Promise<TemplateStatsRecord[]> {
    return this.#read(async (client, ask) => {
      const hash = await ask(client.hGetAll(`${this.prefix}template_stats`));
      const byName = new Map<string, TemplateStatsRecord>();
      for (const [field, value] of Object.entries(hash)) {
        // "uses:<name>": the name is everything after the first colon, colons included.
        const colon = field.indexOf(":");
        if (colon === -1) continue;
        const what = field.slice(0, colon);
        const template = field.slice(colon + 1);
        let record = byName.get(template);
        if (!record) {
          byName.set(template, record = { template, uses: 0, successes: 0, last_used_at: 0 });
        }
        if (what === "uses" || what === "successes" || what === "last_used_at") {
          record[what] = Number(value);
        }
      }
      return [...byName.values()]
        .filter((record) => record.uses > 0)
        .sort((a, b) => compareBytes(a.template, b.template));
    });
  }

  /**
   * Deletes finished jobs that ended before `before`, `PRUNE_BATCH` per round trip. The
   * durations lists, the metrics and the template statistics keep their values. Not queued
   * during an outage: it fails at once, like a read, since its answer (how many were deleted)
   * cannot be known later.
   */
  prune(before: number): Promise<number> {
    const key = `${this.prefix}jobs:ended`;
    const args = [this.prefix, String(before), String(PRUNE_BATCH)];
    return this.#read(async (client, ask) => {
      let total = 0;
      while (true) {
        const deleted = Number(await ask(client.prune(key, args)));
        if (deleted >= 0) total += deleted;
        else return total + (-deleted - 1);
      }
    });
  }

  sessionOpened(sessionId: string, _nodeId: string, ttlMs: number): Promise<void> {
    const expires = this.#now() + ttlMs;
    return this.#write(`sessionOpened ${sessionId}`, async () => {
      await this.#client.zAdd(`${this.prefix}sessions`, { score: expires, value: sessionId });
    }, undefined);
  }

  heartbeat(sessionIds: string[], ttlMs: number): Promise<void> {
    const now = this.#now();
    const key = `${this.prefix}sessions`;
    const members = sessionIds.map((value) => ({ score: now + ttlMs, value }));
    return this.#write(`heartbeat of ${sessionIds.length} sessions`, async () => {
      const multi = this.#client.multi();
      // Only sessions still on record are extended (XX); expired ones are dropped here.
      if (members.length > 0) multi.zAdd(key, members, { condition: "XX" });
      await multi.zRemRangeByScore(key, "-inf", `(${now}`).exec();
    }, undefined);
  }

  sessionClosed(sessionId: string): Promise<void> {
    return this.#write(`sessionClosed ${sessionId}`, async () => {
      await this.#client.zRem(`${this.prefix}sessions`, sessionId);
    }, undefined);
  }

  /** Sessions whose expiry is now or later (expired ones are removed by `heartbeat`). */
  liveSessions(): Promise<number> {
    return this.#read((client, ask) =>
      ask(client.zCount(`${this.prefix}sessions`, this.#now(), "+inf"))
    );
  }

  health(): StoreHealth {
    return {
      backend: "redis",
      status: this.#usable() ? "ok" : "degraded",
      pending_writes: this.#pending.length,
      dropped_writes: this.#dropped,
      location: this.location,
    };
  }

  /**
   * Waits (at most ~2 s, for Redis to come back if it must) for queued writes to land, then
   * closes the connection. What is still queued then is lost, and logged.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed) return;
    await this.#flush(FLUSH_ON_CLOSE_MS);
    this.#closed = true;
    if (this.#pending.length > 0) {
      const kept = this.#pending.filter((op) => op.outboxId !== undefined).length;
      this.#logger.warn(
        `store: ${this.#pending.length} queued writes were never written to Redis at ${this.location}` +
          (kept > 0 ? `; ${kept} job writes stay in ${this.#outbox!.path} for the next start` : ""),
        { first: this.#pending[0]!.what },
      );
    }
    // Not close(): it would wait for replies a stalled Redis may never send.
    if (this.#client.isOpen) this.#client.destroy();
    this.#outbox?.[Symbol.dispose]();
  }

  /** Resolves once no write is queued or in flight, or after `ms`. */
  async #flush(ms: number): Promise<void> {
    const busy = () => this.#pending.length > 0 || this.#inFlight.size > 0 || !!this.#draining;
    if (!busy()) return;
    const deadline = performance.now() + ms;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => timer = setTimeout(resolve, ms));
    try {
      while (busy() && performance.now() < deadline) {
        // Woken when Redis is back or answering again, or when a replay ends.
        const progress = new Promise<void>((resolve) => this.#wakers.add(resolve));
        if (this.#usable() && this.#pending.length > 0) this.#drain();
        const working = [...this.#inFlight, ...(this.#draining ? [this.#draining] : [])];
        const oneSettles = working.map((promise) => promise.then(() => {}, () => {}));
        await Promise.race([progress, timeout, ...oneSettles]);
      }
    } finally {
      clearTimeout(timer);
      this.#wakers.clear();
    }
  }
}
