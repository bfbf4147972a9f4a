/**
 * History cursors: opaque to clients, a position in the newest-first order
 * (start time, then job id) to both backends.
 *
 * @module
 */

export class CursorError extends Error {
  constructor(cursor: string) {
    super(`Invalid cursor ${JSON.stringify(cursor)}: pass back next_cursor from history.list`);
    this.name = "CursorError";
  }
}

export function encodeCursor(startedAt: number, jobId: string): string {
  return btoa(`${startedAt}:${jobId}`).replace(/=+$/, "");
}

/** @throws {CursorError} for anything `encodeCursor` did not make. */
export function decodeCursor(cursor: string): { startedAt: number; jobId: string } {
  let text: string;
  try {
    text = atob(cursor);
  } catch {
    throw new CursorError(cursor);
  }
  const at = text.indexOf(":");
  const startedAt = Number(text.slice(0, at));
  if (at <= 0 || !Number.isSafeInteger(startedAt)) throw new CursorError(cursor);
  return { startedAt, jobId: text.slice(at + 1) };
}
