/**
 * Reading a file that holds a secret (a token, a TLS private key): refused, as ssh refuses such
 * keys, when users other than the owner may read it.
 *
 * @module
 */

/**
 * The file's text.
 *
 * @throws {Error} saying only what is wrong (the caller names the setting): it cannot be read, or
 * others may read it.
 */
export function readPrivateFile(path: string, what = "it"): string {
  let text: string;
  let mode: number | null;
  try {
    mode = Deno.statSync(path).mode;
    text = Deno.readTextFileSync(path);
  } catch (error) {
    throw new Error(`cannot read it (${(error as Error).message})`);
  }
  if (mode !== null && (mode & 0o077) !== 0) {
    throw new Error(
      `other users may read ${what} (mode ${(mode & 0o777).toString(8)}); run chmod 600 on it`,
    );
  }
  return text;
}
