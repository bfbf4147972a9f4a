/**
 * Whether a hook file or folder may be trusted: code that anyone else on the
 * machine can change would let them run commands as the server's user, so it
 * is refused with a warning rather than loaded.
 *
 * @module
 */
import { dirname } from "node:path";

/**
 * Why `path` must not be loaded, or null when it may: it is writable by everyone, or owned by
 * a user other than the server's (root excepted). Group-writable is allowed: it is the default
 * for a user's own files where each user has a private group.
 */
export function untrustedReason(path: string): string | null {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (error) {
    return `cannot be checked (${(error as Error).message})`;
  }
  // No modes or owners on this platform (Windows): nothing to check.
  if (info.mode === null || info.uid === null) return null;
  if ((info.mode & 0o002) !== 0) {
    return `is writable by everyone (mode ${(info.mode & 0o777).toString(8)}); run chmod o-w on it`;
  }
  let me: number | null;
  try {
    me = Deno.uid();
  } catch {
    return "cannot be checked: comparing its owner with the server's user needs --allow-sys=uid";
  }
  if (me !== null && info.uid !== me && info.uid !== 0) {
    return `is owned by another user (uid ${info.uid}, the server runs as uid ${me})`;
  }
  return null;
}

/**
 * The first reason `file` or its folder must not be loaded, or null. A symbolic link is judged by
 * what it points to as well: the folder the real file sits in must be trusted too.
 */
export function untrustedFileReason(file: string, folder: string): string | null {
  const folderReason = untrustedReason(folder);
  if (folderReason) return `its folder ${folder} ${folderReason}`;
  const fileReason = untrustedReason(file);
  if (fileReason) return `${file} ${fileReason}`;
  let real: string;
  try {
    real = Deno.realPathSync(file);
  } catch (error) {
    return `${file} cannot be checked (${(error as Error).message})`;
  }
  const realFolder = dirname(real);
  if (real !== file && realFolder !== safeRealPath(folder)) {
    const reason = untrustedReason(realFolder);
    if (reason) return `${file} links to ${real}, whose folder ${realFolder} ${reason}`;
  }
  return null;
}

function safeRealPath(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}
