/**
 * The method table: binds each protocol method to the job manager. Params
 * arrive validated by the dispatcher against the schemas in protocol.ts.
 *
 * @module
 */
import type { z } from "zod";
import { dryRun } from "../hooks/dry_run.ts";
import type { HookRegistry } from "../hooks/registry.ts";
import type { TemplateSet } from "../templates/loader.ts";
import { listTemplates, renderNamed } from "../templates/status.ts";
import { toJobParams } from "./claude/prompt.ts";
import type { Job, JobManager } from "./jobs.ts";
import {
  ClusterJobsParams,
  ControlParams,
  EmptyParams,
  ErrorCode,
  ExecuteParams,
  HistoryGetParams,
  HistoryListParams,
  HistoryPruneParams,
  HistoryStatsParams,
  HooksRunParams,
  JobsGetParams,
  JobsInputParams,
  JobsListParams,
  JobsOutputParams,
  JobsSubscribeParams,
  JobsUnsubscribeParams,
  JobsWaitParams,
  type MethodName,
  type MethodResult,
  Methods,
  RpcError,
  type ServerInfoResult,
  TemplatesRenderParams,
} from "./protocol.ts";
import { readJobOutput } from "./job_output.ts";
import { waitForJob } from "./job_wait.ts";
import { getHistory, historyStats, listHistory, pruneHistory } from "./history.ts";
import type { MethodDefinition } from "./rpc.ts";
import type { Store } from "./store/store.ts";
import type { NodeRegistry } from "./cluster/registry.ts";
import type { JobEventStreams } from "./cluster/job_events.ts";
import type { RemoteAction, RemoteControl, RemoteHandler } from "./cluster/remote_control.ts";
import type { Router } from "./cluster/routing.ts";
import { type KeyLocks, LocalKeyLocks } from "./key_locks.ts";
import { executeWithKey } from "./key_wait.ts";
import { notRunInfo } from "./never_ran.ts";
import type { MethodContext, Session } from "./session.ts";

export interface MethodDeps {
  jobs: JobManager;
  store: Store;
  hooks: HookRegistry;
  /** The prompt templates loaded at start (templates/loader.ts). */
  templates: TemplateSet;
  /** The program an execute with a prompt runs (CC_EXECUTOR_CLAUDE_BIN). */
  claudeBin: string;
  /** Everything `server.info` reports that neither the job manager nor the connection knows. */
  info: () => ServerWideInfo;
  /** This server's node registry; null: not a node of a cluster. */
  cluster?: () => NodeRegistry | null;
  /** Jobs of other nodes, followed through Redis; null: not a node of a cluster. */
  events?: () => JobEventStreams | null;
  /** Requests for jobs of other nodes, sent to them through Redis; null: not a node. */
  remote?: () => RemoteControl | null;
  /** Routed executes (node, labels) and their queued jobs; null: not a node of a cluster. */
  router?: () => Router | null;
  /** Concurrency keys: the cluster's lines; null (or absent): this server's own, in memory. */
  keyLocks?: () => KeyLocks | null;
}

/**
 * What this node does with a request another node forwards for one of its jobs: exactly what the
 * local method does for a connection of that principal (the same visibility, answers and errors).
 */
export function remoteJobHandler(jobs: JobManager): RemoteHandler {
  return async (jobId, principal, request) => {
    const job = jobs.get(jobId);
    if (!principal.admin && job.principal !== principal.name) {
      throw new RpcError(ErrorCode.JOB_NOT_FOUND, `Job "${jobId}" not found`, { job_id: jobId });
    }
    switch (request.action) {
      case "info":
        return job.info();
      case "control":
        return { job_id: jobId, status: job.control(request.type) };
      case "input": {
        const written = await job.input(request.data, request.eof);
        return { job_id: jobId, bytes_written: written, stdin_open: job.stdinOpen };
      }
    }
  };
}

/** server.info less what depends on the connection's token and the running jobs. */
export type ServerWideInfo = Omit<ServerInfoResult, "running_jobs" | "token" | "limits"> & {
  limits: Omit<ServerInfoResult["limits"], "max_jobs_per_token" | "executes_per_minute">;
};

type Table = {
  [M in MethodName]:
    & MethodDefinition<
      MethodContext,
      z.output<(typeof Methods)[M]["params"]>
    >
    & {
      handler: (
        params: z.output<(typeof Methods)[M]["params"]>,
        ctx: MethodContext,
      ) => MethodResult<M> | Promise<MethodResult<M>>;
    };
};

/** The method table the dispatcher serves; `Methods` in protocol.ts lists the same names. */
export function createMethods(
  {
    jobs,
    store,
    hooks,
    templates,
    claudeBin,
    info,
    cluster = () => null,
    events = () => null,
    remote = () => null,
    router = () => null,
    keyLocks = () => null,
  }: MethodDeps,
): Table {
  const ownLocks = new LocalKeyLocks();
  const locks = (): KeyLocks => keyLocks() ?? ownLocks;
  /** A job waiting for its concurrency key that `session` may see; null otherwise. */
  const waitingForKey = async (jobId: string, session: Session) => {
    if (jobs.has(jobId)) return null;
    const waiter = await locks().waiting(jobId);
    if (waiter === null) return null;
    const { admin, name } = session.principal;
    return admin || waiter.principal === name ? waiter : null;
  };
  const hookStatus = {
    params: EmptyParams,
    handler: () => hooks.status(),
  };
  /**
   * A job this connection may see: a token other than the main one sees only its own jobs (as if
   * no other existed), so it cannot read, feed or stop another client's.
   */
  const visible = (job: Job, session: Session): boolean =>
    session.principal.admin || job.principal === session.principal.name;
  const jobFor = (jobId: string, session: Session): Job => {
    const job = jobs.get(jobId);
    if (!visible(job, session)) {
      // The same answer as for a job that does not exist: whether it does is not theirs to know.
      throw new RpcError(ErrorCode.JOB_NOT_FOUND, `Job "${jobId}" not found`, { job_id: jobId });
    }
    return job;
  };
  /** Methods that read every client's history or change the server: the main token's. */
  const adminOnly = (session: Session, method: string, what = "the main token's") => {
    if (session.principal.admin) return;
    throw new RpcError(
      ErrorCode.FORBIDDEN,
      `${method} is not allowed for token "${session.principal.name}": it is ${what}`,
      { method, token: session.principal.name },
    );
  };
  /**
   * For a job this node does not hold, but another node of the cluster runs (or ran): that node's
   * answer to `request`. Null when the job is this node's, or the server is in no cluster.
   */
  const forwarded = async (
    jobId: string,
    session: Session,
    request: RemoteAction,
  ): Promise<unknown | null> => {
    const streams = events();
    const control = remote();
    if (!streams || !control || jobs.has(jobId)) return null;
    const owner = await streams.owner(jobId);
    if (owner === null || owner.nodeId === cluster()?.id) return null;
    const { name, admin } = session.principal;
    // Another token's job is not found here, as on its node: even when that node is gone, the
    // answer must not say that the job exists, nor where.
    if (!admin && owner.principal !== name) return null;
    return await control.send(owner.nodeId, jobId, { name, admin }, request);
  };

  /**
   * A routed job of this cluster that is not running anywhere (queued, canceled in its queue,
   * refused where it was sent, lost with its node) and `session` may see; null otherwise.
   */
  const notRunning = async (jobId: string, session: Session) => {
    const routing = router();
    if (!routing || jobs.has(jobId)) return null;
    const state = await routing.waiting(jobId, session.principal);
    return state === null || state.state === "starting" ? null : { routing, state };
  };

  /** This server's registry; a cluster method on a server in no cluster is refused. */
  const clusterOf = (): NodeRegistry => {
    const registry = cluster();
    if (registry) return registry;
    throw new RpcError(
      ErrorCode.NOT_IN_CLUSTER,
      "This server is not a node of a cluster: start it with REDIS_URL (and " +
        "CC_EXECUTOR_CLUSTER=on, the default) to join one",
      {},
    );
  };
  const clusterNodes = async (registry: NodeRegistry) => {
    try {
      return await registry.nodes();
    } catch (error) {
      throw new RpcError(
        ErrorCode.STORE_UNAVAILABLE,
        `Cannot read the cluster's nodes: ${(error as Error).message}`,
        {},
      );
    }
  };
  const historyReader = (session: Session, method: string) => {
    if (!session.principal.history) {
      adminOnly(
        session,
        method,
        "the main token's, or one's with \"history\": true in the policy file",
      );
    }
  };
  /** An execute once it may start: routed to another node, or started here. */
  const startJob = async (
    params: ExecuteParams,
    session: Session,
    afterResponse: (fn: () => void) => void,
  ): Promise<MethodResult<"execute">> => {
    const routed = params.node !== undefined || params.labels !== undefined ||
      params.retry_on_node_loss === true;
    const routing = router();
    if (routed && !routing) clusterOf();
    if (routed && routing?.wantsRouting(params)) {
      return await routing.execute(params, session, afterResponse);
    }
    let started;
    try {
      started = await jobs.start(toJobParams(params, claudeBin), session.id, session.principal);
    } catch (error) {
      // The client hears which hook refused the job before the error response.
      if (error instanceof RpcError && error.code === ErrorCode.HOOK_BLOCKED) {
        session.send(JSON.stringify({
          jsonrpc: "2.0",
          method: "hook.blocked",
          params: error.data,
        }));
      }
      throw error;
    }
    const { job, existing } = started;
    if (params.concurrency_key !== undefined && !existing) {
      locks().started(params.concurrency_key, job.id, job.done);
    }
    // The connection may have closed while the job was being recorded: its close found no
    // job to cancel then, so a job it owns is canceled now, as it would have been.
    if (!session.isOpen && !existing && !job.detach) {
      job.terminate("canceled", "client disconnected");
    }
    session.lastJobId = job.id;
    // The response goes first, then the replay of what the job has sent so far, then live output.
    if (params.subscribe !== false) {
      afterResponse(() => {
        // A connection that closed meanwhile must not stay subscribed (it would never be removed).
        if (session.isOpen && !job.isSubscribed(session.id)) job.subscribe(session, 0);
      });
    }
    return {
      job_id: job.id,
      pid: job.group.pid,
      pgid: job.group.pgid,
      status: job.status,
      existing,
      timeout: job.timeout,
    };
  };

  return {
    execute: {
      params: ExecuteParams,
      handler: (params, { session, afterResponse }) => {
        const run = (params: ExecuteParams) => startJob(params, session, afterResponse);
        if (params.concurrency_key === undefined) return run(params);
        return executeWithKey(
          { ...params, concurrency_key: params.concurrency_key },
          session,
          afterResponse,
          {
            locks: locks(),
            jobs,
            store,
            logger: jobs.logger,
            nodeId: jobs.config.nodeId,
            events: events(),
            commandOf: (p) => toJobParams(p, claudeBin).command,
          },
          run,
        );
      },
    },

    control: {
      params: ControlParams,
      handler: async (params, { session }) => {
        const jobId = params.job_id ?? session.lastJobId;
        if (jobId === null) {
          throw new RpcError(
            ErrorCode.JOB_NOT_FOUND,
            `Cannot ${params.type.toLowerCase()}: this connection has started no job; pass job_id`,
          );
        }
        const keyWaiter = await waitingForKey(jobId, session);
        if (keyWaiter) {
          if (params.type === "CANCEL" && await locks().cancel(jobId)) {
            return { job_id: jobId, status: "canceled" };
          }
          if (params.type !== "CANCEL") {
            throw new RpcError(
              ErrorCode.JOB_NOT_RUNNING,
              `Cannot ${params.type.toLowerCase()} job "${jobId}": it is not running (status: queued)`,
              { job_id: jobId, status: "queued" },
            );
          }
        }
        const waiting = await notRunning(jobId, session);
        if (waiting) {
          const { routing, state } = waiting;
          if (params.type === "CANCEL" && state.state === "queued") {
            if (await routing.cancelQueued(jobId, state, "canceled while queued")) {
              return { job_id: jobId, status: "canceled" };
            }
          } else {
            const status = routing.info(jobId, state).status;
            throw new RpcError(
              ErrorCode.JOB_NOT_RUNNING,
              `Cannot ${params.type.toLowerCase()} job "${jobId}": it is not running (status: ${status})`,
              { job_id: jobId, status },
            );
          }
        }
        const elsewhere = await forwarded(jobId, session, { action: "control", type: params.type });
        if (elsewhere !== null) return elsewhere as MethodResult<"control">;
        const status = jobFor(jobId, session).control(params.type);
        return { job_id: jobId, status };
      },
    },

    "jobs.list": {
      params: JobsListParams,
      handler: ({ limit, ...filter }, { session }) => {
        // Filtered before the limit, so a token gets up to `limit` jobs of its own.
        const mine = jobs.list(filter).filter((job) => visible(job, session));
        return { jobs: mine.slice(0, limit ?? mine.length).map((job) => job.info()) };
      },
    },

    "jobs.get": {
      params: JobsGetParams,
      handler: async (params, { session }) => {
        const keyWaiter = await waitingForKey(params.job_id, session);
        if (keyWaiter) {
          return notRunInfo(params.job_id, {
            command: keyWaiter.command,
            status: "queued",
            since: keyWaiter.since,
            reason: `waiting for concurrency key ${keyWaiter.key}`,
          });
        }
        const waiting = await notRunning(params.job_id, session);
        if (waiting) return waiting.routing.info(params.job_id, waiting.state);
        return (await forwarded(params.job_id, session, { action: "info" }) as
          | MethodResult<"jobs.get">
          | null) ??
          jobFor(params.job_id, session).info();
      },
    },

    "jobs.subscribe": {
      params: JobsSubscribeParams,
      handler: async (params, { session, afterResponse }) => {
        const remote = events();
        if (remote && !jobs.has(params.job_id)) {
          // Another node's job: replayed and followed from its stream in Redis.
          const { start, ...subscribed } = await remote.subscribe(
            session,
            session.principal,
            params.job_id,
            params.from_seq ?? 0,
          );
          afterResponse(() => {
            if (session.isOpen) start();
          });
          return subscribed;
        }
        const job = jobFor(params.job_id, session);
        const fromSeq = params.from_seq ?? 0;
        // Nothing can be emitted between this response and the replay: both run in the same
        // turn of the event loop, so the figures below describe exactly what is replayed.
        const preview = job.previewReplay(fromSeq);
        afterResponse(() => {
          if (session.isOpen) job.subscribe(session, fromSeq);
        });
        return {
          job_id: job.id,
          status: job.status,
          replay_from_seq: preview.firstSeq,
          missed: preview.missed,
        };
      },
    },

    "jobs.unsubscribe": {
      params: JobsUnsubscribeParams,
      handler: async (params, { session }) => {
        const remote = events();
        if (remote && !jobs.has(params.job_id)) {
          if (remote.unsubscribe(session.id, params.job_id)) {
            return { job_id: params.job_id, subscribed: true };
          }
          // Not followed from here: false for a job of another node, as for a local one.
          const owner = await remote.owner(params.job_id);
          const { name, admin } = session.principal;
          if (owner !== null && (admin || owner.principal === name)) {
            return { job_id: params.job_id, subscribed: false };
          }
          throw new RpcError(ErrorCode.JOB_NOT_FOUND, `Job "${params.job_id}" not found`, {
            job_id: params.job_id,
          });
        }
        return {
          job_id: params.job_id,
          subscribed: jobFor(params.job_id, session).unsubscribe(session.id),
        };
      },
    },

    "jobs.input": {
      params: JobsInputParams,
      handler: async (params, { session }) => {
        const elsewhere = await forwarded(params.job_id, session, {
          action: "input",
          data: params.data,
          eof: params.eof ?? false,
        });
        if (elsewhere !== null) return elsewhere as MethodResult<"jobs.input">;
        const job = jobFor(params.job_id, session);
        const written = await job.input(params.data, params.eof ?? false);
        return { job_id: job.id, bytes_written: written, stdin_open: job.stdinOpen };
      },
    },

    "jobs.output": {
      params: JobsOutputParams,
      handler: ({ job_id, ...params }, { session }) =>
        readJobOutput(jobFor(job_id, session), params),
    },

    "jobs.wait": {
      params: JobsWaitParams,
      handler: ({ job_id, ...params }, { session }) => {
        const job = jobFor(job_id, session);
        // A wait outlives no connection: the answer would have nowhere to go.
        const gone = new AbortController();
        session.closed.then(() => gone.abort());
        return waitForJob(job, params, { signal: gone.signal });
      },
    },

    "history.list": {
      params: HistoryListParams,
      handler: (params, { session }) => {
        historyReader(session, "history.list");
        return listHistory(store, params);
      },
    },

    "history.get": {
      params: HistoryGetParams,
      handler: (params, { session }) => {
        historyReader(session, "history.get");
        return getHistory(store, params.job_id, params.include_output ?? false);
      },
    },

    "history.stats": {
      params: HistoryStatsParams,
      handler: (params, { session }) => {
        historyReader(session, "history.stats");
        return historyStats(store, params.shapes ?? 20);
      },
    },

    "history.prune": {
      params: HistoryPruneParams,
      handler: (params, { session }) => {
        adminOnly(session, "history.prune");
        return pruneHistory(store, params.older_than_seconds, jobs.now());
      },
    },

    "hooks.status": hookStatus,
    hook_status: hookStatus,

    "hooks.reload": {
      params: EmptyParams,
      handler: async (_params, { session }) => {
        adminOnly(session, "hooks.reload");
        await hooks.reload();
        return hooks.status();
      },
    },

    "hooks.run": {
      params: HooksRunParams,
      // Hooks are the operator's code; a dry run still runs them, with the caller's request.
      handler: async (params, { session }) => {
        adminOnly(session, "hooks.run");
        const set = hooks.current.acquire();
        try {
          return await dryRun(set, params, jobs.maxAttempts);
        } finally {
          set.release();
        }
      },
    },

    "templates.list": {
      params: EmptyParams,
      handler: () => listTemplates(templates, store),
    },

    "templates.render": {
      params: TemplatesRenderParams,
      handler: (params) => renderNamed(templates, params),
    },

    "server.info": {
      params: EmptyParams,
      handler: (_params, { session }) => {
        const wide = info();
        const { principal } = session;
        return {
          ...wide,
          running_jobs: jobs.runningCount,
          limits: {
            ...wide.limits,
            max_jobs_per_token: Math.min(principal.maxJobs, wide.limits.max_jobs),
            executes_per_minute: principal.executesPerMinute,
          },
          token: {
            name: principal.name,
            policy: principal.policy?.name ?? null,
            admin: principal.admin,
            history: principal.history,
          },
        };
      },
    },

    "cluster.status": {
      params: EmptyParams,
      handler: async () => {
        const registry = clusterOf();
        const [nodes, routed, keyed] = await Promise.all([
          clusterNodes(registry),
          router()?.depth() ?? [],
          locks().depth(),
        ]);
        const queues = [
          ...routed,
          ...keyed.map((line) => ({
            queue: `key:${line.key}`,
            node: null,
            labels: null,
            waiting: line.waiting,
            taken: 1,
          })),
        ];
        return {
          node_id: registry.id,
          down_after_seconds: registry.downAfterMs / 1000,
          nodes,
          queues,
        };
      },
    },

    "cluster.jobs": {
      params: ClusterJobsParams,
      handler: async ({ limit }, { session }) => {
        const registry = clusterOf();
        // Every client's commands are in it: read as history is.
        historyReader(session, "cluster.jobs");
        const [nodes, page] = await Promise.all([
          clusterNodes(registry),
          listHistory(store, { status: "running", limit: limit ?? 100 }),
        ]);
        const state = new Map(nodes.map((node) => [node.id, node.status]));
        return {
          node_id: registry.id,
          jobs: page.jobs.map((record) => ({
            job_id: record.job_id,
            node_id: record.node_id,
            node_status: state.get(record.node_id) ?? "unknown" as const,
            command: record.command,
            cwd: record.cwd,
            pid: record.pid,
            started_at: record.started_at,
          })),
        };
      },
    },

    ping: {
      params: EmptyParams,
      handler: () => ({ pong: true as const, time: new Date(jobs.now()).toISOString() }),
    },

    pong: {
      params: Methods.pong.params,
      handler: () => ({}),
    },
  };
}
