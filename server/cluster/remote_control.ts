/**
 * Control of a job through any node: `jobs.get`, `control` (cancel, pause,
 * resume) and `jobs.input` for a job this node does not run are sent over Redis pub/sub
 * to the node that does, which acts exactly as if the request had come from
 * one of its own connections (the same checks, the same answer or error) and
 * publishes the answer back.
 *
 * Channels (under the store's prefix):
 *
 *     cluster:control:<node id>   requests for the jobs of that node
 *     cluster:reply:<instance>    answers for the server instance that asked
 *
 * A request nobody answers within `timeoutMs` (the node is down, or Redis
 * lost the message: pub/sub delivers at most once) is an error saying so;
 * the request may or may not have been carried out, as with any timeout.
 *
 * @module
 */
import { type ClusterClient, clusterClient, connectAll } from "./redis_client.ts";
import { z } from "zod";
import type { Logger } from "../log.ts";
import { ControlType, ErrorCode, RpcError } from "../protocol.ts";

/** What can be done to a job through another node. */
export type RemoteAction =
  | { action: "info" }
  | { action: "control"; type: ControlType }
  | { action: "input"; data?: string; eof: boolean };

/** Who asks: the owning node applies the same visibility rule as for its own connections. */
export interface RemotePrincipal {
  name: string;
  admin: boolean;
}

/** Carries out `action` on job `jobId` of this node; throws RpcError as the local method would. */
export type RemoteHandler = (
  jobId: string,
  principal: RemotePrincipal,
  action: RemoteAction,
) => Promise<unknown>;

export interface RemoteControlOptions {
  redisUrl: string;
  /** @default "cc-executor:" */
  prefix?: string;
  nodeId: string;
  logger: Logger;
  /** How long an answer may take. @default 5000 */
  timeoutMs?: number;
}

// Anyone who can write to Redis can publish on these channels: a message is checked before use,
// so one that is not what a node sends is dropped instead of failing the node.
const Request = z.object({
  id: z.string(),
  reply: z.string(),
  job_id: z.string(),
  principal: z.object({ name: z.string(), admin: z.boolean() }),
  action: z.discriminatedUnion("action", [
    z.object({ action: z.literal("info") }),
    z.object({ action: z.literal("control"), type: ControlType }),
    z.object({ action: z.literal("input"), data: z.string().optional(), eof: z.boolean() }),
  ]),
});
type Request = z.infer<typeof Request>;

const Reply = z.object({
  id: z.string(),
  result: z.unknown().optional(),
  error: z.object({ code: z.number(), message: z.string(), data: z.unknown().optional() })
    .optional(),
});
type Reply = z.infer<typeof Reply>;

/** `text` parsed as JSON and checked against `schema`; null when it is neither. */
function parse<T>(schema: z.ZodType<T>, text: string): T | null {
  try {
    const parsed = schema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

type Client = ClusterClient;

export class RemoteControl implements AsyncDisposable {
  readonly #options: RemoteControlOptions;
  readonly #publisher: Client;
  readonly #subscriber: Client;
  readonly #prefix: string;
  readonly #replyChannel: string;
  readonly #pending = new Map<string, (reply: Reply) => void>();
  /** Waiters for nudges (see `notice`), by id. */
  readonly #notices = new Map<string, Set<() => void>>();
  #handler: RemoteHandler | null = null;

  private constructor(options: RemoteControlOptions, publisher: Client, subscriber: Client) {
    this.#options = options;
    this.#publisher = publisher;
    this.#subscriber = subscriber;
    this.#prefix = `${options.prefix ?? "cc-executor:"}cluster:`;
    this.#replyChannel = `${this.#prefix}reply:${crypto.randomUUID()}`;
  }

  /** Connects and listens for requests to this node and answers to this instance. */
  static async open(options: RemoteControlOptions): Promise<RemoteControl> {
    const publisher = clusterClient(options.redisUrl);
    const subscriber = clusterClient(options.redisUrl);
    await connectAll(publisher, subscriber);
    try {
      const control = new RemoteControl(options, publisher, subscriber);
      await subscriber.subscribe(
        `${control.#prefix}control:${options.nodeId}`,
        (message) => void control.#serve(message),
      );
      await subscriber.subscribe(control.#replyChannel, (message) => control.#answer(message));
      return control;
    } catch (error) {
      publisher.destroy();
      subscriber.destroy();
      throw error;
    }
  }

  /** What this node does with requests for its jobs; until set, they are refused. */
  serve(handler: RemoteHandler): void {
    this.#handler = handler;
  }

  /**
   * Sends `action` for job `jobId` to node `nodeId` and resolves to its answer.
   * @throws {RpcError} the owning node's error, or NODE_UNREACHABLE when it does not answer.
   */
  async send(
    nodeId: string,
    jobId: string,
    principal: RemotePrincipal,
    action: RemoteAction,
  ): Promise<unknown> {
    const id = crypto.randomUUID();
    const timeoutMs = this.#options.timeoutMs ?? 5000;
    const answered = new Promise<Reply>((resolve) => this.#pending.set(id, resolve));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const unreachable = (why: string) =>
      new RpcError(
        ErrorCode.NODE_UNREACHABLE,
        `Cannot reach node "${nodeId}", which runs job "${jobId}": ${why}`,
        { job_id: jobId, node_id: nodeId },
      );
    // The deadline covers the publish too: a Redis that holds writes (CLIENT PAUSE, a stall)
    // must not hold the request past it.
    const expired = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), timeoutMs);
    });
    try {
      const request: Request = { id, reply: this.#replyChannel, job_id: jobId, principal, action };
      let receivers: number | null;
      try {
        receivers = await Promise.race([
          this.#publisher.publish(`${this.#prefix}control:${nodeId}`, JSON.stringify(request)),
          expired,
        ]);
      } catch (error) {
        throw unreachable(`Redis: ${(error as Error).message}`);
      }
      if (receivers === null) throw unreachable(`no answer within ${timeoutMs} ms`);
      // Nobody listens on that node's channel: it is not running (or not connected to Redis).
      if (receivers === 0) throw unreachable("it is not connected to the cluster");
      const reply = await Promise.race([answered, expired]);
      if (reply === null) throw unreachable(`no answer within ${timeoutMs} ms`);
      if (reply.error) throw new RpcError(reply.error.code, reply.error.message, reply.error.data);
      return reply.result;
    } finally {
      clearTimeout(timer);
      this.#pending.delete(id);
    }
  }

  /** This server instance's channel: where other nodes answer it, or nudge it (`notice`). */
  get replyChannel(): string {
    return this.#replyChannel;
  }

  /**
   * Resolves when a message with id `id` arrives on this instance's channel, or after `ms`
   * (pub/sub may lose a message: the waiter looks at the truth in Redis either way).
   */
  notice(id: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const waiters = this.#notices.get(id) ?? new Set();
      waiters.add(done);
      this.#notices.set(id, waiters);
      const notices = this.#notices;
      function done() {
        clearTimeout(timer);
        waiters.delete(done);
        if (waiters.size === 0 && notices.get(id) === waiters) notices.delete(id);
        resolve();
      }
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const waiters of this.#notices.values()) for (const done of [...waiters]) done();
    this.#subscriber.destroy();
    this.#publisher.destroy();
    await Promise.resolve();
  }

  async #serve(message: string): Promise<void> {
    const request = parse(Request, message);
    if (request === null) {
      this.#options.logger.warn("ignored a control request that is not one");
      return;
    }
    let reply: Reply;
    try {
      if (!this.#handler) {
        // Between joining and serving: the asker hears the node is not there yet.
        throw new RpcError(
          ErrorCode.NODE_UNREACHABLE,
          `Node "${this.#options.nodeId}" is starting and takes no requests yet`,
          { node_id: this.#options.nodeId },
        );
      }
      reply = {
        id: request.id,
        result: await this.#handler(request.job_id, request.principal, request.action),
      };
    } catch (error) {
      reply = {
        id: request.id,
        error: error instanceof RpcError
          ? { code: error.code, message: error.message, data: error.data }
          : { code: ErrorCode.INTERNAL_ERROR, message: "Internal error" },
      };
      if (!(error instanceof RpcError)) {
        this.#options.logger.error("a control request from another node failed", {
          job_id: request.job_id,
          error: String((error as Error)?.stack ?? error),
        });
      }
    }
    try {
      await this.#publisher.publish(request.reply, JSON.stringify(reply));
    } catch (error) {
      this.#options.logger.warn("could not answer a control request from another node", {
        job_id: request.job_id,
        error: String(error),
      });
    }
  }

  #answer(message: string): void {
    const reply = parse(Reply, message);
    if (reply === null) return;
    this.#pending.get(reply.id)?.(reply);
    for (const done of [...this.#notices.get(reply.id) ?? []]) done();
  }
}
