/**
 * TLS for the server (CC_EXECUTOR_TLS_CERT and CC_EXECUTOR_TLS_KEY): reading the PEM files with
 * the care a private key deserves, and turning what Deno says about a refused pair, or a client's
 * untrusted certificate, into one line a person can act on.
 *
 * @module
 */
import { readPrivateFile } from "./private_file.ts";

/** The certificate and key the server serves HTTPS and WSS with. */
export interface TlsConfig {
  /** CC_EXECUTOR_TLS_CERT: the certificate chain's PEM file (the server's first). */
  certFile: string;
  /** CC_EXECUTOR_TLS_KEY: the private key's PEM file. */
  keyFile: string;
  /** The certificate chain, PEM. */
  cert: string;
  /** The private key, PEM. */
  key: string;
}

export type TlsVariable = "CC_EXECUTOR_TLS_CERT" | "CC_EXECUTOR_TLS_KEY";

/** A TLS file that is missing, unreadable, shared or not what it should be. */
export class TlsFileError extends Error {
  constructor(message: string, readonly variable: TlsVariable) {
    super(message);
    this.name = "TlsFileError";
  }
}

/**
 * Reads the certificate and key; null when neither is set. Both or neither: one alone is refused
 * naming the other. The key file is refused when group or others may read it (as
 * CC_EXECUTOR_TOKEN_FILE is, and as ssh refuses such keys).
 *
 * @throws {TlsFileError} naming the variable at fault.
 */
export function readTlsFiles(
  certFile: string | undefined,
  keyFile: string | undefined,
): TlsConfig | null {
  if (certFile === undefined && keyFile === undefined) return null;
  if (certFile === undefined || keyFile === undefined) {
    const [set, missing]: [TlsVariable, TlsVariable] = certFile === undefined
      ? ["CC_EXECUTOR_TLS_KEY", "CC_EXECUTOR_TLS_CERT"]
      : ["CC_EXECUTOR_TLS_CERT", "CC_EXECUTOR_TLS_KEY"];
    throw new TlsFileError(
      `Invalid configuration: ${set} is set but ${missing} is not: TLS needs both the ` +
        "certificate and its private key",
      missing,
    );
  }
  const cert = readPem("CC_EXECUTOR_TLS_CERT", certFile, false);
  if (!/-----BEGIN CERTIFICATE-----/.test(cert)) {
    throw fail("CC_EXECUTOR_TLS_CERT", certFile, "it holds no PEM certificate (BEGIN CERTIFICATE)");
  }
  const key = readPem("CC_EXECUTOR_TLS_KEY", keyFile, true);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) {
    throw fail("CC_EXECUTOR_TLS_KEY", keyFile, "it holds no PEM private key (BEGIN PRIVATE KEY)");
  }
  return { certFile, keyFile, cert, key };
}

function fail(variable: TlsVariable, path: string, why: string): TlsFileError {
  return new TlsFileError(
    `Invalid configuration: ${variable}=${JSON.stringify(path)}: ${why}`,
    variable,
  );
}

function readPem(variable: TlsVariable, path: string, secret: boolean): string {
  try {
    return secret ? readPrivateFile(path, "this private key") : Deno.readTextFileSync(path);
  } catch (error) {
    const why = (error as Error).message;
    throw fail(variable, path, secret ? why : `cannot read it (${why})`);
  }
}

/**
 * What `Deno.serve` refusing the pair means, as one line naming the variable; null when `error`
 * is not about the certificate or key.
 */
export function tlsStartProblem(error: unknown, tls: TlsConfig): string | null {
  const message = error instanceof Error ? error.message : String(error);
  if (/no certificates found/i.test(message)) {
    return `Cannot start TLS: CC_EXECUTOR_TLS_CERT=${
      JSON.stringify(tls.certFile)
    }: Deno found no usable certificate in it (${message})`;
  }
  if (/no keys found|private key/i.test(message)) {
    return `Cannot start TLS: CC_EXECUTOR_TLS_KEY=${
      JSON.stringify(tls.keyFile)
    }: Deno found no usable private key in it (${message})`;
  }
  if (/KeyMismatch|keys may not be consistent/i.test(message)) {
    return `Cannot start TLS: CC_EXECUTOR_TLS_KEY=${JSON.stringify(tls.keyFile)} ` +
      `is not the private key of the certificate in CC_EXECUTOR_TLS_CERT=${
        JSON.stringify(tls.certFile)
      } (${message})`;
  }
  if (/certificate|key|tls|pem/i.test(message)) {
    return `Cannot start TLS with CC_EXECUTOR_TLS_CERT=${
      JSON.stringify(tls.certFile)
    } and CC_EXECUTOR_TLS_KEY=${JSON.stringify(tls.keyFile)}: ${message}`;
  }
  return null;
}

/**
 * When a connection to `url` failed because this process refused the server's certificate, a hint
 * that says what to do about it; null otherwise. A certificate this process does not trust asks
 * for DENO_CERT; a trusted one that does not name the URL's host asks for another URL (setting
 * DENO_CERT would change nothing).
 *
 * @example
 * ```ts
 * certificateHint(error, "wss://0.0.0.0:8003/ws");
 * // 'the server's TLS certificate does not name 0.0.0.0 (it names 127.0.0.1, localhost): ...'
 * ```
 */
export function certificateHint(error: unknown, url: string): string | null {
  const text = [error, (error as { cause?: unknown } | null)?.cause]
    .map((part) => part instanceof Error ? part.message : String(part ?? "")).join(" ");
  if (/NotValidForName|not valid for name/i.test(text)) {
    const host = new URL(url).hostname.replace(/^\[(.*)\]$/, "$1");
    // rustls lists the names it found ("... is only valid for IpAddress(127.0.0.1) or
    // DnsName("localhost")"); older versions say only NotValidForName.
    const names = [...text.matchAll(/(?:IpAddress|DnsName)\("?([^")]+)"?\)/g)].map((m) => m[1]);
    const listed = names.length > 0 ? ` (it names ${[...new Set(names)].join(", ")})` : "";
    return `the server's TLS certificate does not name ${host}${listed}: use a URL with a name ` +
      "it lists";
  }
  if (!/invalid peer certificate|UnknownIssuer|certificate verify/i.test(text)) return null;
  return "the server's TLS certificate is not trusted here: for a certificate signed by a " +
    "private CA, set DENO_CERT=/path/to/ca.pem (the CA's PEM file) and retry";
}
