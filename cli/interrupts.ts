/**
 * Ctrl-C, SIGTERM and SIGHUP while a command waits on the server. While one
 * of these is installed the signals do not kill the CLI; the command decides
 * (cancel the job, stop waiting), and exits with 128 + the first signal's
 * number, as a shell reports a process that a signal ended.
 *
 * @module
 */
import { signalExitCode } from "./outcome.ts";

const SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

export class Interrupts implements Disposable {
  /** How many signals have arrived. */
  count = 0;
  /** 128 + the first signal's number; null while none has arrived. */
  exitCode: number | null = null;
  #listeners: [Deno.Signal, () => void][];

  /** `onSignal` runs for every signal, with the running count (1 for the first). */
  constructor(onSignal: (count: number, signal: Deno.Signal) => void) {
    this.#listeners = SIGNALS.map((signal) => [signal, () => {
      this.count++;
      this.exitCode ??= signalExitCode(signal);
      onSignal(this.count, signal);
    }]);
    for (const [signal, listener] of this.#listeners) Deno.addSignalListener(signal, listener);
  }

  [Symbol.dispose](): void {
    for (const [signal, listener] of this.#listeners) Deno.removeSignalListener(signal, listener);
  }
}
