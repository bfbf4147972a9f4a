/**
 * `cc-executor cluster status`: the nodes of the cluster the server belongs
 * to (docs/cluster.md), up and down, with their labels and load.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import type { ClusterNode } from "../server/protocol.ts";
import type { CliContext } from "./context.ts";
import { examples } from "./help.ts";
import { formatDuration, type Paint } from "./output.ts";
import { connectTo, resolveTarget, rpc, withTarget } from "./target.ts";

/** `cluster` and its subcommands. */
export function clusterCommand(ctx: CliContext) {
  const cluster = new Command("cluster")
    .description("the nodes of the cluster the server belongs to (servers sharing one Redis)")
    .addHelpText(
      "after",
      examples([
        ["cc-executor cluster status", "every node: up or down, labels, load"],
        ["cc-executor cluster status --json | jq '.nodes[] | select(.status == \"down\")'", ""],
      ]),
    );

  withTarget(
    cluster.command("status").description(
      "list the cluster's nodes: up or down, labels, running jobs of their capacity, last " +
        "heartbeat, and the routing queues that hold jobs (exit 0; 1 when the server is in no " +
        "cluster)",
    ),
  )
    .option("--json", "print the server's answer as JSON")
    .addHelpText(
      "after",
      examples([
        ["cc-executor cluster status", "from the server this machine uses"],
        ["cc-executor cluster status --url ws://build-2:8003/ws --json", "from another node"],
      ]),
    )
    .action(async (options) => {
      await using client = await connectTo(resolveTarget(options));
      const status = await rpc(() => client.request("cluster.status", {}));
      if (options.json) return ctx.output.json(status);
      const paint = ctx.output.paint("stdout");
      const now = Date.now();
      ctx.output.table(
        ["NODE", "STATUS", "RUNNING", "LABELS", "HEARTBEAT", "URL"],
        status.nodes.map((node) => nodeRow(node, status.node_id, now, paint)),
      );
      const busy = status.queues.filter((q) => q.waiting > 0 || q.taken > 0);
      if (busy.length > 0) {
        ctx.output.out("");
        ctx.output.table(
          ["QUEUE", "WAITING", "TAKEN"],
          busy.map((q) => [q.queue, String(q.waiting), String(q.taken)]),
        );
      }
      const up = status.nodes.filter((n) => n.status === "up").length;
      const waiting = status.queues.reduce((sum, q) => sum + q.waiting, 0);
      ctx.output.err(
        `${up} of ${status.nodes.length} node(s) up; answered by ${status.node_id}; a node is ` +
          `down ${status.down_after_seconds} s after its last heartbeat; ${waiting} job(s) ` +
          "waiting in the queues",
      );
    });

  return cluster;
}

function nodeRow(node: ClusterNode, self: string, now: number, paint: Paint): string[] {
  const age = Math.max(0, now - Date.parse(node.last_heartbeat_at));
  return [
    node.id === self ? `${node.id} (this)` : node.id,
    node.status === "up" ? paint.green("up") : paint.red("down"),
    `${node.running}/${node.capacity}`,
    node.labels.join(",") || "-",
    `${formatDuration(age)} ago`,
    node.url ?? "-",
  ];
}
