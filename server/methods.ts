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
import type { JobManager } from "./jobs.ts";
import {
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
import type { MethodContext } from "./session.ts";

export interface MethodDeps {
  jobs: JobManager;
  store: Store;
  hooks: HookRegistry;
  /** The prompt templates loaded at start (templates/loader.ts). */
  templates: TemplateSet;
  /** The program an execute with a prompt runs (CC_EXECUTOR_CLAUDE_BIN). */
  claudeBin: string;
  /** Everything `server.info` reports that the job manager does not know. */
  info: () => Omit<ServerInfoResult, "running_jobs">;
}

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
  { jobs, store, hooks, templates, claudeBin, info }: MethodDeps,
): Table {
  const hookStatus = {
    params: EmptyParams,
    handler: () => hooks.status(),
  };
  return {
    execute: {
      params: ExecuteParams,
      handler: async (params, { session, afterResponse }) => {
        let started;
        try {
          started = await jobs.start(toJobParams(params, claudeBin), session.id);
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
      },
    },

    control: {
      params: ControlParams,
      handler: (params, { session }) => {
        const jobId = params.job_id ?? session.lastJobId;
        if (jobId === null) {
          throw new RpcError(
            ErrorCode.JOB_NOT_FOUND,
            `Cannot ${params.type.toLowerCase()}: this connection has started no job; pass job_id`,
          );
        }
        const status = jobs.get(jobId).control(params.type);
        return { job_id: jobId, status };
      },
    },

    "jobs.list": {
      params: JobsListParams,
      handler: (params) => ({ jobs: jobs.list(params).map((job) => job.info()) }),
    },

    "jobs.get": {
      params: JobsGetParams,
      handler: (params) => jobs.get(params.job_id).info(),
    },

    "jobs.subscribe": {
      params: JobsSubscribeParams,
      handler: (params, { session, afterResponse }) => {
        const job = jobs.get(params.job_id);
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
      handler: (params, { session }) => ({
        job_id: params.job_id,
        subscribed: jobs.get(params.job_id).unsubscribe(session.id),
      }),
    },

    "jobs.input": {
      params: JobsInputParams,
      handler: async (params) => {
        const job = jobs.get(params.job_id);
        const written = await job.input(params.data, params.eof ?? false);
        return { job_id: job.id, bytes_written: written, stdin_open: job.stdinOpen };
      },
    },

    "jobs.output": {
      params: JobsOutputParams,
      handler: ({ job_id, ...params }) => readJobOutput(jobs.get(job_id), params),
    },

    "jobs.wait": {
      params: JobsWaitParams,
      handler: ({ job_id, ...params }, { session }) => {
        const job = jobs.get(job_id);
        // A wait outlives no connection: the answer would have nowhere to go.
        const gone = new AbortController();
        session.closed.then(() => gone.abort());
        return waitForJob(job, params, { signal: gone.signal });
      },
    },

    "history.list": {
      params: HistoryListParams,
      handler: (params) => listHistory(store, params),
    },

    "history.get": {
      params: HistoryGetParams,
      handler: (params) => getHistory(store, params.job_id, params.include_output ?? false),
    },

    "history.stats": {
      params: HistoryStatsParams,
      handler: (params) => historyStats(store, params.shapes ?? 20),
    },

    "history.prune": {
      params: HistoryPruneParams,
      handler: (params) => pruneHistory(store, params.older_than_seconds, jobs.now()),
    },

    "hooks.status": hookStatus,
    hook_status: hookStatus,

    "hooks.reload": {
      params: EmptyParams,
      handler: async () => {
        await hooks.reload();
        return hooks.status();
      },
    },

    "hooks.run": {
      params: HooksRunParams,
      handler: async (params) => {
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
      handler: () => ({ ...info(), running_jobs: jobs.runningCount }),
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
