/**
 * The HTTP edge: `/health`; `/ws` (alias `/ws/mcp`) upgraded to a WebSocket
 * session speaking JSON-RPC 2.0; `/mcp`, the MCP face over Streamable HTTP.
 * Wires config, jobs, sessions and the dispatcher together; owns graceful
 * shutdown.
 *
 * @module
 */
import { BEARER_PROTOCOL_PREFIX, offeredProtocols, PROTOCOL } from "./auth.ts";
import { dialectOf } from "./job_admission.ts";
import { type Principal, Principals } from "./principal.ts";
import { inProcessSocketPair } from "./in_process.ts";
import { type JobEnvironments, jobEnvironments } from "./job_env.ts";
import type { McpHttpHandler } from "./mcp/http.ts";
import { refusedOrigin } from "./origin.ts";
import { openSpoolFolder, type SpoolFolder } from "./spool_dir.ts";
import type { ServerConfig } from "./config.ts";
import { JobManager } from "./jobs.ts";
import { createLogger, type Logger } from "./log.ts";
import { createMethods, remoteJobHandler } from "./methods.ts";
import { detectGroupMode, type GroupMode, missingRunPrograms, resolveShell } from "./process.ts";
import { Methods, Notifications } from "./protocol.ts";
import { createRpcHandler } from "./rpc.ts";
import { type MethodContext, Session } from "./session.ts";
import { openStore } from "./store/open.ts";
import type { Store } from "./store/store.ts";
import { StoreUpkeep } from "./store/upkeep.ts";
import { HookRegistry } from "../hooks/registry.ts";
import { formatProblem, loadTemplates, type TemplateSet } from "../templates/loader.ts";
import { settlesWithin } from "./deadline.ts";
import { sweepOrphans } from "./sweep.ts";
import { tlsStartProblem } from "./tls.ts";
import { VERSION } from "./version.ts";
import type { ClusterMember } from "./cluster/member.ts";

export interface StartServerOptions {
  /** @default a logger at config.logLevel writing to stderr */
  logger?: Logger;
  /** @default config.shell, checked; else bash where present, else sh */
  shell?: string;
  /** @default detected: "setsid" where the binary exists, else "detached" */
  groupMode?: GroupMode;
  /** Where jobs are recorded. @default opened from the config (Redis with REDIS_URL, else SQLite); closed at shutdown */
  store?: Store;
  /** The prompt templates. @default the built-ins and config.templatesDir's, loaded at start */
  templates?: TemplateSet;
  /**
   * The environment commands start from, less what config.env withholds.
   * @default Deno.env.toObject()
   */
  env?: Record<string, string>;
}

/** A running server. `await using` shuts it down at the end of the block. */
export interface ExecutorServer extends AsyncDisposable {
  readonly addr: Deno.NetAddr;
  /** ws://host:port/ws, or wss://host:port/ws with TLS (config.tls) */
  readonly url: string;
  readonly jobs: JobManager;
  /** The loaded hooks; `hooks.reload()` is what SIGHUP and `hooks.reload` do. */
  readonly hooks: HookRegistry;
  /** The prompt templates loaded at start; refused files are in `templates.problems`. */
  readonly templates: TemplateSet;
  /** Stops every job (their clients get `process.completed`), closes every session, stops listening. */
  shutdown(): Promise<void>;
  /**
   * A new session over an in-process connection: the client end, to give to
   * `ExecutorClient.attach`. It speaks for `principal` (default: the main token's), as if it had
   * passed the token check with that token.
   */
  openInProcessSocket(principal?: Principal): WebSocket;
  /** Resolves when the server has stopped listening. */
  readonly finished: Promise<void>;
}

/** The server could not start (port taken, address unavailable, ...). */
export class ServerStartError extends Error {
  constructor(message: string, override readonly cause?: unknown) {
    super(message);
    this.name = "ServerStartError";
  }
}

/**
 * Starts listening; resolves once the port is bound.
 *
 * @example
 * ```ts
 * await using server = await startServer(defaultConfig({ port: 0 }));
 * console.log(server.url); // ws://127.0.0.1:40123/ws
 * ```
 */
export async function startServer(
  config: ServerConfig,
  options: StartServerOptions = {},
): Promise<ExecutorServer> {
  const logger = options.logger ?? createLogger(config.logLevel);
  let shell: string;
  try {
    shell = options.shell ?? (await resolveShell(config.shell));
  } catch (error) {
    throw new ServerStartError(`Cannot start: ${(error as Error).message}`, error);
  }
  const groupMode = options.groupMode ?? (await detectGroupMode());
  checkRunPermission(shell, groupMode);
  if (config.policy && dialectOf(shell) === null) {
    throw new ServerStartError(
      `Cannot start: the command policy (CC_EXECUTOR_POLICY) reads bash and sh syntax, and the ` +
        `shell is ${shell}; set CC_EXECUTOR_SHELL to bash or sh`,
    );
  }
  if (groupMode === "detached") {
    logger.warn(
      "no setsid binary found; process groups use Deno's detached spawn, which is slower",
    );
  }
  let store: Store;
  try {
    store = options.store ?? await openStore(config, logger);
  } catch (error) {
    throw new ServerStartError(`Cannot start: ${(error as Error).message}`, error);
  }
  const ownStore = options.store === undefined;
  let hooks: HookRegistry | undefined;
  let spool: SpoolFolder | undefined;
  let cluster: ClusterMember | undefined;
  // Known once the server listens; the registry reads them at each heartbeat.
  let listenUrl: string | null = null;
  let running = () => 0;
  try {
    cluster = await joinCluster(config, logger, {
      nodeUrl: () => config.cluster?.url ?? listenUrl,
      running: () => running(),
    });
    // A bad template file is refused and logged; the server starts with the others.
    const templates = options.templates ?? await loadTemplates({ dir: config.templatesDir });
    logTemplates(templates, logger);
    // Command hooks start from the environment commands get: the server's secrets are withheld.
    const jobEnv = jobEnvironments(options.env ?? Deno.env.toObject(), config.env);
    hooks = await HookRegistry.open({
      config: config.hooks,
      store,
      logger,
      commandEnv: jobEnv.command,
    });
    spool = await openSpoolFolder(config, logger);
    const server = await listen(config, {
      jobEnv,
      logger,
      shell,
      groupMode,
      store,
      ownStore,
      hooks,
      templates,
      spool,
      cluster: cluster ?? null,
    });
    listenUrl = server.url;
    running = () => server.jobs.runningCount;
    // Publishes the URL now rather than at the next heartbeat; a failure here is only logged.
    await cluster?.registry.refresh().catch((error) =>
      logger.warn("cluster heartbeat failed; retrying", { error: String(error) })
    );
    return server;
  } catch (error) {
    await cluster?.leave();
    await spool?.[Symbol.asyncDispose]();
    await hooks?.[Symbol.asyncDispose]();
    if (ownStore) await store[Symbol.asyncDispose]();
    throw error;
  }
}

interface ListenOptions {
  logger: Logger;
  shell: string;
  groupMode: GroupMode;
  store: Store;
  /** The server opened the store, so it closes it at shutdown. */
  ownStore: boolean;
  hooks: HookRegistry;
  templates: TemplateSet;
  spool: SpoolFolder;
  jobEnv: JobEnvironments;
  /** This server's part in a cluster (it leaves at shutdown); null: not a node. */
  cluster: ClusterMember | null;
}

/** Sweeps what a dead server left, then serves; the second half of `startServer`. */
async function listen(
  config: ServerConfig,
  {
    logger,
    shell,
    groupMode,
    store,
    ownStore,
    hooks,
    templates,
    spool,
    jobEnv,
    cluster,
  }: ListenOptions,
): Promise<ExecutorServer> {
  const swept = await sweepOrphans(store, {
    nodeId: config.nodeId,
    killGraceMs: config.killGraceMs,
    logger,
    lost: await cluster?.lostWhileDown(store) ?? [],
  });
  if (swept.length > 0) {
    logger.warn("marked jobs of a server that died as interrupted", { jobs: swept.length });
  }
  await cluster?.endSwept(swept);
  const startedAt = performance.now();
  const jobs = new JobManager({
    config,
    shell,
    groupMode,
    logger,
    store,
    hooks: {
      get current() {
        return hooks.current;
      },
      maxAttempts: config.hooks.maxAttempts,
    },
    templates,
    // 0: no spill at all, so no file is ever written.
    spoolDir: config.spoolMaxBytes === 0 ? null : spool.path,
    spoolMaxBytes: config.spoolMaxBytes === 0 ? Infinity : config.spoolMaxBytes,
    env: jobEnv,
    onJobStarted: cluster ? (job) => cluster.jobStarted(job) : undefined,
  });
  const sessions = new Set<Session>();
  /** The in-process sessions among them (the MCP face's). */
  const internal = new Set<Session>();
  const background = new StoreUpkeep(store, config, logger, () => [...sessions].map((s) => s.id));

  const handle = createRpcHandler<MethodContext>(
    createMethods({
      jobs,
      store,
      hooks,
      templates,
      claudeBin: config.claudeBin,
      cluster: () => cluster?.registry ?? null,
      events: () => cluster?.events ?? null,
      remote: () => cluster?.remote ?? null,
      router: () => cluster?.router ?? null,
      keyLocks: () => cluster?.locks ?? null,
      info: () => ({
        name: "cc-executor",
        version: VERSION,
        uptime_ms: Math.round(performance.now() - startedAt),
        pid: Deno.pid,
        sessions: sessions.size,
        store: store.health(),
        shell,
        process_groups: groupMode,
        limits: {
          max_jobs: config.maxJobs,
          max_jobs_per_session: config.maxJobsPerSession,
          max_sessions: config.maxSessions,
          max_message_bytes: config.maxMessageBytes,
          max_output_bytes: config.maxOutputBytes,
          max_timeout_seconds: config.maxTimeoutSeconds,
          replay_buffer_bytes: config.replayBufferBytes,
          kill_grace_ms: config.killGraceMs,
        },
      }),
    }),
    {
      onInternalError: (error, method) =>
        logger.error("internal error", { method, error: String((error as Error)?.stack ?? error) }),
    },
  );

  const capabilities = {
    methods: Object.keys(Methods),
    notifications: Object.keys(Notifications),
  };

  const health = () => {
    const { backend, status, pending_writes } = store.health();
    return {
      // Jobs run either way; "degraded" says their records are waiting for the store.
      status: status === "ok" ? "ok" : "degraded",
      version: VERSION,
      uptime_ms: Math.round(performance.now() - startedAt),
      sessions: sessions.size,
      running_jobs: jobs.runningCount,
      store: { backend, status, pending_writes },
      tls: config.tls !== null,
    };
  };

  /** A session on `socket`: a WebSocket that passed the checks, or an in-process end. */
  const principals = new Principals(config);
  const openSession = (socket: WebSocket, principal: Principal): Session => {
    const session = new Session(socket, {
      principal,
      handle,
      logger,
      maxMessageBytes: config.maxMessageBytes,
      connected: (s) => ({ session_id: s.id, version: VERSION, capabilities }),
      onClose: (s) => {
        sessions.delete(s);
        internal.delete(s);
        background.sessionClosed(s.id);
        jobs.sessionClosed(s.id);
        cluster?.events.unsubscribe(s.id);
        void cluster?.router?.sessionClosed(s);
        logger.debug("session closed", { session: s.id });
      },
    });
    sessions.add(session);
    background.sessionOpened(session.id);
    logger.debug("session opened", { session: session.id });
    return session;
  };

  const openInProcessSocket = (principal: Principal = principals.default): WebSocket => {
    const { server, client } = inProcessSocketPair();
    const session = openSession(server, principal);
    // One in-process session serves every MCP client of this server: the per-connection limits
    // are for connections, so they do not apply to it (CC_EXECUTOR_MAX_JOBS still does).
    internal.add(session);
    jobs.exemptFromSessionLimit(session.id);
    return client;
  };

  // The MCP SDK is loaded on the first /mcp request: a server nobody talks MCP to does not carry
  // it (it added 20 MB to every server's RSS and 0.1 s to every start).
  let mcp: Promise<McpHttpHandler> | null = null;
  const mcpHandler = () =>
    mcp ??= import("./mcp/http.ts").then(({ createMcpHttpHandler }) =>
      createMcpHttpHandler({ connect: openInProcessSocket, config: config.mcp, logger })
    );

  /** Set once the sessions are being closed at shutdown: no new ones from then on. */
  let closing = false;
  /** Requests whose responses are not yet sent, each settling when it is (see shutdown). */
  const inFlight = new Set<Promise<void>>();
  const track = (info: Deno.ServeHandlerInfo<Deno.NetAddr>) => {
    const sent: Promise<void> = info.completed.then(
      () => void inFlight.delete(sent),
      () => void inFlight.delete(sent),
    );
    inFlight.add(sent);
  };

  const onRequest = (
    request: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ): Response | Promise<Response> => {
    track(info);
    const { pathname } = new URL(request.url);
    if (pathname === "/health" && (request.method === "GET" || request.method === "HEAD")) {
      return Response.json(health());
    }
    if (pathname !== "/ws" && pathname !== "/ws/mcp" && pathname !== "/mcp") {
      return Response.json({
        error: `Not found: ${pathname}`,
        endpoints: ["/ws", "/ws/mcp", "/mcp", "/health"],
      }, {
        status: 404,
      });
    }
    if (closing) {
      return Response.json({ error: "The server is shutting down" }, {
        status: 503,
        headers: { connection: "close" },
      });
    }
    // The Origin check comes first: a page in a browser must not even learn whether a token is set.
    const forbidden = refusedOrigin(request, config.allowedOrigins);
    if (forbidden) {
      logger.warn("refused a request from a browser origin", {
        path: pathname,
        origin: request.headers.get("origin"),
      });
      return Response.json({ error: forbidden }, { status: 403 });
    }
    const principal = principals.authenticate(request);
    if (!principal) {
      logger.warn("rejected connection without a valid token", { path: pathname });
      return Response.json({
        error: "Unauthorized: send Authorization: Bearer <token> (browsers: offer the " +
          `subprotocols "${PROTOCOL}" and "${BEARER_PROTOCOL_PREFIX}<token>")`,
      }, {
        status: 401,
        headers: { "www-authenticate": "Bearer" },
      });
    }
    if (pathname === "/mcp") {
      return mcpHandler().then((handler) => handler.handle(request, info.completed, principal));
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return Response.json({
        error: `${pathname} speaks JSON-RPC 2.0 over WebSocket; send an upgrade request`,
      }, {
        status: 426,
        headers: { upgrade: "websocket" },
      });
    }
    // A client that offers subprotocols must get one back: ours, never the one carrying a token.
    const offered = offeredProtocols(request);
    if (offered.length > 0 && !offered.includes(PROTOCOL)) {
      return Response.json({
        error: `Unsupported WebSocket subprotocols: offer "${PROTOCOL}" (with ` +
          `"${BEARER_PROTOCOL_PREFIX}<token>" to authenticate from a browser)`,
      }, { status: 400 });
    }
    if (sessions.size - internal.size >= config.maxSessions) {
      logger.warn("refused a connection: too many sessions", { limit: config.maxSessions });
      return Response.json({
        error: `Too many connections: ${config.maxSessions} are open, the limit ` +
          "(CC_EXECUTOR_MAX_SESSIONS)",
        limit: config.maxSessions,
      }, { status: 503, headers: { "retry-after": "5" } });
    }
    const { socket, response } = Deno.upgradeWebSocket(request, {
      idleTimeout: config.wsIdleTimeoutSeconds,
      ...(offered.length > 0 ? { protocol: PROTOCOL } : {}),
    });
    openSession(socket, principal);
    return response;
  };

  // Deno's graceful shutdown() waits for every connection it accepted, a TLS handshake a peer
  // never finishes included (an idle TCP connection to the TLS port): it could wait forever. The
  // server stops listening by aborting this instead, once what it serves has been sent.
  const stopListening = new AbortController();
  let listening: Deno.HttpServer<Deno.NetAddr>;
  try {
    listening = Deno.serve({
      hostname: config.host,
      port: config.port,
      signal: stopListening.signal,
      // With a certificate and key Deno serves HTTPS (and WSS) only; plain requests fail.
      ...(config.tls ? { cert: config.tls.cert, key: config.tls.key } : {}),
      onListen: () => {},
      onError: (error) => {
        logger.error("request failed", { error: String(error) });
        return Response.json({ error: "Internal server error" }, { status: 500 });
      },
    }, onRequest);
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      throw new ServerStartError(
        `Cannot listen on ${config.host}:${config.port}: the port is already in use (set CC_EXECUTOR_PORT or --port)`,
        error,
      );
    }
    const tlsProblem = config.tls && tlsStartProblem(error, config.tls);
    if (tlsProblem) throw new ServerStartError(tlsProblem, error);
    throw new ServerStartError(
      `Cannot listen on ${config.host}:${config.port}: ${(error as Error).message}`,
      error,
    );
  }
  const addr = listening.addr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const url = `${config.tls ? "wss" : "ws"}://${host}:${addr.port}/ws`;
  logger.info("cc-executor listening", {
    url,
    shell,
    groups: groupMode,
  });

  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    stopping ??= (async () => {
      logger.info("shutting down", { running_jobs: jobs.runningCount, sessions: sessions.size });
      // The connections close below, after the node has left the cluster: their routed jobs
      // (queued, or running on other nodes) are canceled now, while the queues and the other
      // nodes can still be reached, as a connection that closes has them canceled.
      const router = cluster?.router;
      if (router) await Promise.all([...sessions].map((s) => router.sessionClosed(s)));
      // Takes no more jobs from the cluster's queues (an entry taken is started, or left for
      // another node to reclaim).
      await cluster?.stopTaking();
      await jobs.shutdown();
      // The jobs' last frames reach their streams; then the node leaves (gone, not down).
      await cluster?.leave();
      if (mcp) await (await mcp.catch(() => null))?.close();
      closing = true;
      await Promise.all([...sessions].map((s) => s.close(1001, "server shutting down")));
      // The responses under way get a moment to go out (a peer that stopped reading must not hold
      // the shutdown up either); then every connection is closed, however far it got.
      if (!(await settlesWithin(Promise.all(inFlight), RESPONSE_DRAIN_MS))) {
        logger.warn("closing connections with responses not yet sent", {
          requests: inFlight.size,
        });
      }
      stopListening.abort();
      await listening.finished.catch((error) =>
        logger.warn("the HTTP server ended with an error", { error: String(error) })
      );
      await spool[Symbol.asyncDispose]();
      await background.stop();
      await hooks[Symbol.asyncDispose]();
      if (ownStore) await store[Symbol.asyncDispose]();
      logger.info("stopped");
    })();

  cluster?.serve({
    jobs,
    store,
    principal: (name) => principals.all.find((p) => p.name === name) ?? null,
    remoteHandler: remoteJobHandler(jobs),
  });

  return {
    addr,
    url,
    jobs,
    hooks,
    templates,
    shutdown,
    openInProcessSocket,
    finished: listening.finished,
    [Symbol.asyncDispose]: shutdown,
  };
}

/** Joins the cluster when this server is a node of one; a taken node id refuses the start. */
async function joinCluster(
  config: ServerConfig,
  logger: Logger,
  hooks: { nodeUrl: () => string | null; running: () => number },
): Promise<ClusterMember | undefined> {
  if (!config.cluster || !config.redisUrl) return undefined;
  // Loaded only for a node, as the Redis store is (store/open.ts): node-redis is not small.
  const { ClusterMember, ClusterJoinError } = await import("./cluster/member.ts");
  try {
    return await ClusterMember.join(config, logger, hooks);
  } catch (error) {
    if (error instanceof ClusterJoinError) throw new ServerStartError(error.message, error.cause);
    throw error;
  }
}

/** How long responses under way at shutdown get to be sent before their connections are closed. */
const RESPONSE_DRAIN_MS = 2000;

/** Each refused template file as a warning (file:line: why), then what loaded. */
function logTemplates(templates: TemplateSet, logger: Logger): void {
  if (templates.dirNote) logger.info(`templates: ${templates.dirNote}`);
  const cwd = Deno.cwd();
  for (const problem of templates.problems) {
    logger.warn(`template refused: ${formatProblem(problem, cwd)}`);
  }
  // The built-ins alone load at every start: worth a line only when the user's folder added some.
  const own = templates.templates.filter((template) => template.source === "user").length;
  const fields = {
    templates: templates.templates.length,
    user: own,
    refused: templates.problems.length,
    dir: templates.dir,
  };
  if (own > 0 || templates.problems.length > 0) logger.info("templates loaded", fields);
  else logger.debug("templates loaded", fields);
}

/**
 * A scoped --allow-run (`deno task start:locked`) must still cover what the server runs itself,
 * or every job, cancel or timeout would fail: refuse to start and name what to add.
 */
function checkRunPermission(shell: string, groupMode: GroupMode): void {
  const missing = missingRunPrograms(shell, groupMode);
  if (missing.length === 0) return;
  throw new ServerStartError(
    `Cannot start: --allow-run does not list ${missing.join(", ")}, which the server runs ` +
      "itself (the shell runs every command, setsid gives it a process group, kill signals the " +
      "group, since Deno.kill needs an unscoped --allow-run). Add to the list: " +
      `--allow-run=<list>,${missing.join(",")}`,
  );
}
