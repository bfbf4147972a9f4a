/**
 * The cluster's Redis connections: how each is made and how long a reply may
 * take. Every cluster part (registry, job streams, remote control) keeps its
 * own connections, because a blocking read or a pub/sub subscription takes a
 * connection over, but all of them behave the same way in an outage.
 *
 * @module
 */
import { createClient } from "redis";

/**
 * The longest wait for one reply. node-redis has no timeout for a command already sent, so a Redis
 * that stops answering (paused, or a partition that sends no reset) would hold whatever waits on
 * it (a heartbeat, a subscribe, the shutdown) for ever.
 */
export const REPLY_TIMEOUT_MS = 2000;

export type ClusterClient = ReturnType<typeof createClient>;

/**
 * A client for the cluster's Redis, not yet connected. A command sent while it is disconnected
 * fails at once (nothing queues without bound); it reconnects with a capped backoff; a connection
 * that hears nothing for three reply deadlines is replaced, with PINGs keeping a healthy idle one
 * talking (as the store's does). Errors are reported by the commands that meet them, so the
 * client's own error events are dropped here.
 */
export function clusterClient(url: string): ClusterClient {
  const client = createClient({
    url,
    disableOfflineQueue: true,
    pingInterval: REPLY_TIMEOUT_MS,
    socket: {
      reconnectStrategy: (retries) => Math.min(100 * 2 ** retries, 2000),
      socketTimeout: REPLY_TIMEOUT_MS * 3,
    },
  });
  client.on("error", () => {});
  return client;
}

/** `sent`'s outcome, or a rejection once Redis has not answered within `ms`. */
export async function withDeadline<T>(sent: Promise<T>, ms = REPLY_TIMEOUT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      sent,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** How long connecting may take (the store has just reached this Redis, so it is up). */
const CONNECT_TIMEOUT_MS = 5000;

/** Connects every client, or none: on a failure (or after 5 s) all are destroyed and it throws. */
export async function connectAll(...clients: ClusterClient[]): Promise<void> {
  try {
    await withDeadline(Promise.all(clients.map((client) => client.connect())), CONNECT_TIMEOUT_MS);
  } catch (error) {
    for (const client of clients) client.destroy();
    throw error;
  }
}
