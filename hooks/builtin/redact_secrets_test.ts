import assert from "node:assert/strict";
import type { OutputContext } from "../types.ts";
import {
  MAX_HELD,
  MAX_HELD_PRIVATE_KEY,
  REDACT_SECRETS,
  Redactor,
  redactSecretsHook,
  type RedactState,
  type Secret,
  secretsFrom,
} from "./redact_secrets.ts";

const TOKEN = { name: "GITHUB_TOKEN", value: "s3cr3t-t0ken-value" };
const KEY = { name: "OPENAI_API_KEY", value: "another-long-secret-ü✓" };

/** Feeds `chunks` through one stream and ends it; returns every piece sent, the final one last. */
function stream(redactor: Redactor, chunks: readonly string[]): string[] {
  const state: RedactState = {};
  const sent = chunks.map((chunk) => redactor.push(state, chunk, false));
  sent.push(redactor.push(state, "", true));
  assert.deepEqual(state, {}, "the final call leaves nothing behind");
  return sent;
}

const joined = (redactor: Redactor, chunks: readonly string[]) => stream(redactor, chunks).join("");

/** A small deterministic PRNG (mulberry32), so a failing case can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- whole texts --------------------------------------------------------------------------------

Deno.test("redact_secrets: configured values and every token pattern are replaced, named", () => {
  const redactor = new Redactor([TOKEN, KEY]);
  const cases: [string, string][] = [
    [`token=${TOKEN.value}\n`, "token=[REDACTED:GITHUB_TOKEN]\n"],
    [`${KEY.value}${KEY.value}`, "[REDACTED:OPENAI_API_KEY][REDACTED:OPENAI_API_KEY]"],
    [`x ghp_${"a1".repeat(18)} y`, "x [REDACTED:github_token] y"],
    [`gho_${"Z".repeat(36)}`, "[REDACTED:github_token]"],
    [`"ghs_${"0".repeat(36)}"`, `"[REDACTED:github_token]"`],
    [`github_pat_11ABC_${"x".repeat(60)}.`, "[REDACTED:github_token]."],
    [`ANTHROPIC=sk-ant-api03-${"k".repeat(80)}-AA\n`, "ANTHROPIC=[REDACTED:anthropic_api_key]\n"],
    [`key: sk-proj-${"p_Q-".repeat(20)}`, "key: [REDACTED:openai_api_key]"],
    [`sk-${"q".repeat(48)}`, "[REDACTED:openai_api_key]"],
    ["id AKIAIOSFODNN7EXAMPLE!", "id [REDACTED:aws_access_key_id]!"],
    ["ASIAIOSFODNN7EXAMPLE", "[REDACTED:aws_access_key_id]"],
    ["SLACK=xoxb-1234567890-abcdefGHIJ\n", "SLACK=[REDACTED:slack_token]\n"],
    [
      "> Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_-+/=\n",
      "> Authorization: Bearer [REDACTED:bearer_token]\n",
    ],
    [
      `{"authorization": "bearer abc.DEF~1"}`,
      `{"authorization": "bearer [REDACTED:bearer_token]"}`,
    ],
    ["Proxy-AUTHORIZATION:BEARER\tt0k", "Proxy-AUTHORIZATION:BEARER\t[REDACTED:bearer_token]"],
    [
      "a\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIB\nAKIA/xyz==\n-----END RSA PRIVATE KEY-----\nb",
      "a\n[REDACTED:private_key]\nb",
    ],
    [
      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
      "[REDACTED:private_key]",
    ],
    // Output that ends inside a key block (`head key.pem`): the rest of it is key material.
    ["x\n-----BEGIN PRIVATE KEY-----\nMIIEv\nQIBADAN", "x\n[REDACTED:private_key]"],
  ];
  for (const [text, expected] of cases) assert.equal(redactor.redact(text), expected, text);
});

Deno.test("redact_secrets: ordinary text that merely looks close is left alone", () => {
  const redactor = new Redactor([TOKEN]);
  for (
    const text of [
      "risk-assessment-document-final-version", // sk- inside a word
      "task-scheduler-configuration-for-prod",
      "ghp_short and gh_" + "a".repeat(40), // too short; no type letter
      "AKIA1234 is not twenty characters",
      "xoxb-short",
      "Bearer abc (no Authorization header)",
      "authorization: basic dXNlcjpwYXNz",
      "-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----",
      "-----BEGIN CERTIFICATE-----\nMIID\n-----END CERTIFICATE-----",
      "s3cr3t-t0ken-valu (one character short of the secret)",
      "héllo wörld ✓ 🚀 — 日本語",
      "",
    ]
  ) {
    assert.equal(redactor.redact(text), text);
    assert.equal(joined(redactor, [text]), text);
  }
});

Deno.test("redact_secrets: values shorter than 8 characters are ignored; duplicates count once", () => {
  const redactor = new Redactor([
    { name: "SHORT", value: "1234567" },
    { name: "EMPTY", value: "" },
    { name: "EIGHT", value: "12345678" },
    { name: "AGAIN", value: "12345678" },
  ]);
  assert.equal(redactor.secretCount, 1);
  assert.equal(redactor.redact("1234567 x 12345678"), "1234567 x [REDACTED:EIGHT]");
});

Deno.test("redact_secrets: of two secrets that start alike the longer wins; a value beats a pattern", () => {
  const redactor = new Redactor([
    { name: "SHORT", value: "prefix-12" },
    { name: "LONG", value: "prefix-1234" },
    { name: "MY_KEY", value: `sk-${"m".repeat(30)}` },
  ]);
  assert.equal(redactor.redact("prefix-1234 prefix-12"), "[REDACTED:LONG] [REDACTED:SHORT]");
  assert.equal(redactor.redact(`sk-${"m".repeat(30)}`), "[REDACTED:MY_KEY]");
  // Split between the two lengths: the longer one is waited for.
  assert.equal(joined(redactor, ["a prefix-12", "34 b"]), "a [REDACTED:LONG] b");
  assert.equal(joined(redactor, ["a prefix-12", "3 b"]), "a [REDACTED:SHORT]3 b");
});

// ---- chunks -------------------------------------------------------------------------------------

Deno.test("redact_secrets: a secret split at every position across two chunks", () => {
  const redactor = new Redactor([TOKEN, KEY]);
  for (const secret of [TOKEN, KEY]) {
    const text = `before ${secret.value} after\n`;
    const expected = `before [REDACTED:${secret.name}] after\n`;
    for (let cut = 0; cut <= text.length; cut++) {
      const sent = stream(redactor, [text.slice(0, cut), text.slice(cut)]);
      assert.equal(sent.join(""), expected, `cut at ${cut}`);
      for (const piece of sent) {
        // No piece carries any of the secret's text that is not also ordinary text around it.
        assert.ok(!piece.includes(secret.value.slice(0, 4)), `cut at ${cut}: ${piece}`);
      }
    }
  }
});

Deno.test("redact_secrets: a secret split across three chunks, at every pair of positions", () => {
  const redactor = new Redactor([TOKEN]);
  const text = `>${TOKEN.value}<`;
  for (let a = 0; a <= text.length; a++) {
    for (let b = a; b <= text.length; b++) {
      const chunks = [text.slice(0, a), text.slice(a, b), text.slice(b)];
      assert.equal(joined(redactor, chunks), ">[REDACTED:GITHUB_TOKEN]<", `cuts ${a}, ${b}`);
    }
  }
});

Deno.test("redact_secrets: a token pattern split at every position", () => {
  const redactor = new Redactor([]);
  const cases: [string, string][] = [
    [`a ghp_${"x".repeat(36)} b`, "a [REDACTED:github_token] b"],
    ["k AKIAIOSFODNN7EXAMPLE.", "k [REDACTED:aws_access_key_id]."],
    ["Authorization: Bearer abc.def-ghi\n", "Authorization: Bearer [REDACTED:bearer_token]\n"],
    [
      "-----BEGIN EC PRIVATE KEY-----\nMHcCAQ\n-----END EC PRIVATE KEY-----\n",
      "[REDACTED:private_key]\n",
    ],
  ];
  for (const [text, expected] of cases) {
    for (let cut = 0; cut <= text.length; cut++) {
      assert.equal(joined(redactor, [text.slice(0, cut), text.slice(cut)]), expected, `${cut}`);
    }
    // One character at a time.
    assert.equal(joined(redactor, [...text]), expected);
  }
});

Deno.test("redact_secrets: a token reaching the end of a chunk is held until it ends", () => {
  const redactor = new Redactor([]);
  const state: RedactState = {};
  const token = `ghp_${"t".repeat(36)}`;
  assert.equal(redactor.push(state, `x ${token}`, false), "x ");
  assert.equal(redactor.push(state, "more", false), "", "the token may still be going on");
  assert.equal(redactor.push(state, " y", false), "[REDACTED:github_token] y");
  assert.equal(redactor.push(state, `z ${token}`, false), "z ");
  // The stream ends inside it: redacted all the same.
  assert.equal(redactor.push(state, "", true), "[REDACTED:github_token]");
});

Deno.test("redact_secrets: two secrets in one chunk, and one chunk ending on another's start", () => {
  const redactor = new Redactor([TOKEN, KEY]);
  assert.deepEqual(
    stream(redactor, [`${TOKEN.value} and ${KEY.value}; ${KEY.value.slice(0, 5)}`, "x"]),
    ["[REDACTED:GITHUB_TOKEN] and [REDACTED:OPENAI_API_KEY]; ", `${KEY.value.slice(0, 5)}x`, ""],
  );
});

Deno.test("redact_secrets: text without secrets flows through and nothing is held", () => {
  const redactor = new Redactor([TOKEN]);
  const state: RedactState = {};
  for (const chunk of ["compiling...\n", "  42 files\n", "héllo ✓ 🚀\n", "done: ok"]) {
    assert.equal(redactor.push(state, chunk, false), chunk);
    assert.equal(state.held, "");
  }
  // A genuine prefix of the secret is held, and only that.
  assert.equal(redactor.push(state, "value: s3cr", false), "value: ");
  assert.equal(state.held, "s3cr");
  // It was not the secret: released with the next chunk.
  assert.equal(redactor.push(state, "ets are fine\n", false), "s3crets are fine\n");
  assert.equal(state.held, "");
});

Deno.test("redact_secrets: a prefix that never completes is released at the end", () => {
  const redactor = new Redactor([TOKEN]);
  assert.deepEqual(stream(redactor, ["tail s3cr3t-t0"]), ["tail ", "s3cr3t-t0"]);
  assert.deepEqual(stream(redactor, ["ends with gh"]), ["ends with ", "gh"]);
  assert.deepEqual(stream(redactor, ["Authorization: Bear"]), ["", "Authorization: Bear"]);
});

Deno.test("redact_secrets: multi-byte text around and inside secrets", () => {
  const secret = { name: "PASSPHRASE", value: "pässwörd-✓-🚀-日本" };
  const redactor = new Redactor([secret]);
  const text = `ü ${secret.value} ✓🚀 ${secret.value.slice(0, 6)}…`;
  const expected = `ü [REDACTED:PASSPHRASE] ✓🚀 ${secret.value.slice(0, 6)}…`;
  assert.equal(redactor.redact(text), expected);
  // Cut only between code points, as a decoder hands them over.
  const points = [...text];
  for (let cut = 0; cut <= points.length; cut++) {
    const chunks = [points.slice(0, cut).join(""), points.slice(cut).join("")];
    assert.equal(joined(redactor, chunks), expected, `cut at code point ${cut}`);
  }
});

Deno.test("redact_secrets: the fast path returns the very same text and holds nothing", () => {
  const redactor = new Redactor([]);
  const state: RedactState = {};
  const chunk = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. Ünïcödé ✓\n".repeat(60);
  assert.equal(redactor.push(state, chunk, false), chunk);
  assert.equal(state.held, undefined, "the fast path does not go through the scanner");
  const started = performance.now();
  for (let i = 0; i < 2000; i++) redactor.push(state, chunk, false); // ~8 MB
  const elapsed = performance.now() - started;
  assert.ok(elapsed < 2000, `2000 chunks of 4 KB took ${elapsed.toFixed(0)} ms`);
  // A chunk whose end could start a token takes the long way, and holds just that.
  assert.equal(redactor.push(state, "see github_p", false), "see ");
  assert.equal(state.held, "github_p");
  assert.equal(redactor.push(state, "ages\n", false), "github_pages\n");
});

Deno.test("redact_secrets: what is held stays bounded", () => {
  const redactor = new Redactor([]);
  const state: RedactState = {};
  let out = redactor.push(state, "x ghp_", false);
  for (let i = 0; i < 100; i++) {
    out += redactor.push(state, "abcdefghij".repeat(10), false);
    assert.ok((state.held ?? "").length <= MAX_HELD, `${state.held?.length} held`);
  }
  out += redactor.push(state, "", true);
  // Tokens are at most 255 characters after their prefix: the rest of the run is plain text.
  assert.ok(out.startsWith("x [REDACTED:github_token]fghij"), out.slice(0, 40));
  assert.equal(out, redactor.redact("x ghp_" + "abcdefghij".repeat(1000)));
});

Deno.test("redact_secrets: an endless private key block is given up on, never leaked", () => {
  const redactor = new Redactor([]);
  const state: RedactState = {};
  const body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n";
  let out = redactor.push(state, "start\n-----BEGIN PRIVATE KEY-----\n", false);
  assert.equal(out, "start\n");
  let maxHeld = 0;
  for (let i = 0; i < 1500; i++) { // ~100 KB of key
    out += redactor.push(state, body, false);
    maxHeld = Math.max(maxHeld, (state.held ?? "").length);
  }
  assert.ok(maxHeld <= MAX_HELD_PRIVATE_KEY, `${maxHeld} held`);
  assert.equal(out, "start\n[REDACTED:private_key]");
  // The footer, split, ends the block; what follows flows again.
  out += redactor.push(state, body + "-----END PRIVATE", false);
  out += redactor.push(state, " KEY-----\nafter ", false);
  out += redactor.push(state, `ghp_${"z".repeat(36)}\n`, false);
  out += redactor.push(state, "", true);
  assert.equal(out, "start\n[REDACTED:private_key]\nafter [REDACTED:github_token]\n");
  assert.ok(!out.includes("MIIE"));
});

Deno.test("redact_secrets: chunked output equals the whole text redacted, for random splits", () => {
  const secrets: Secret[] = [
    TOKEN,
    KEY,
    { name: "SHORTER", value: "s3cr3t-t0" }, // a prefix of TOKEN
    { name: "REPEAT", value: "aaaaaaaaab" }, // overlaps itself
  ];
  const redactor = new Redactor(secrets);
  const tokens = [
    `ghp_${"Ab1".repeat(12)}`,
    "AKIAIOSFODNN7EXAMPLE",
    "Authorization: Bearer tok.en-1",
    `sk-ant-${"x".repeat(24)}`,
    "-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\n",
  ];
  const noise = [
    "a",
    "b",
    " ",
    "\n",
    "-",
    "s",
    "k",
    "g",
    "h",
    "p",
    "_",
    "A",
    "é",
    "✓",
    "🚀",
    "aaaa",
    "s3c",
    "s3cr3t-t",
    "ghp",
    "sk-",
    "-----",
    "Bearer ",
    "authoriz",
  ];
  const next = random(20250501);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
  for (let round = 0; round < 400; round++) {
    const parts: string[] = [];
    const count = 1 + Math.floor(next() * 30);
    for (let i = 0; i < count; i++) {
      const roll = next();
      parts.push(roll < 0.15 ? pick(secrets).value : roll < 0.25 ? pick(tokens) : pick(noise));
    }
    const text = parts.join("");
    const whole = redactor.redact(text);
    for (const secret of secrets) {
      assert.ok(!whole.includes(secret.value), `${secret.name} left in ${JSON.stringify(whole)}`);
    }
    // Split between code points, into 1 to 8 chunks (empty ones included).
    const points = [...text];
    const cuts = Array.from(
      { length: Math.floor(next() * 8) },
      () => Math.floor(next() * (points.length + 1)),
    ).sort((a, b) => a - b);
    const chunks = [0, ...cuts].map((from, i) =>
      points.slice(from, [...cuts, points.length][i]).join("")
    );
    const sent = joined(redactor, chunks);
    assert.equal(sent, whole, `round ${round}: ${JSON.stringify(chunks)}`);
  }
});

// ---- the hook -----------------------------------------------------------------------------------

function outputContext(
  state: Record<string, unknown>,
  data: string,
  options: { final?: boolean; env?: Record<string, string> } = {},
): OutputContext {
  return {
    point: "output",
    job_id: "job-1",
    session_id: "session-1",
    attempt: 1,
    dry_run: false,
    request: { command: "env", cwd: null, env: options.env ?? {}, timeout: null },
    stream: "stdout",
    data,
    offset: 0,
    final: options.final ?? false,
    state,
  };
}

Deno.test("redact_secrets hook: scrubs the server's and the request's secret variables across chunks", async () => {
  const hook = redactSecretsHook({
    secretEnvVars: ["GITHUB_TOKEN", "NPM_TOKEN", "UNSET"],
    env: { GITHUB_TOKEN: "server-side-token", HOME: "/home/someone-long" },
    timeoutMs: 5000,
  });
  assert.equal(hook.name, REDACT_SECRETS);
  assert.equal(hook.point, "output");
  assert.deepEqual(hook.source, { kind: "builtin", location: REDACT_SECRETS });
  assert.equal(hook.onFailure, "block", "a failure withholds the output");
  const signal = new AbortController().signal;
  const env = { NPM_TOKEN: "npm_request_token", GITHUB_TOKEN: "request-side-token" };
  const state: Record<string, unknown> = {};
  const sent: unknown[] = [];
  for (
    const data of [
      "server-side-tok",
      "en request-si",
      "de-token npm_request_",
      "token /home/someone-long\n",
    ]
  ) {
    sent.push(await hook.invoke(outputContext(state, data, { env }), signal));
  }
  sent.push(await hook.invoke(outputContext(state, "", { env, final: true }), signal));
  assert.deepEqual(
    sent.map((r) => (r as { data: string }).data).join(""),
    "[REDACTED:GITHUB_TOKEN] [REDACTED:GITHUB_TOKEN] [REDACTED:NPM_TOKEN] /home/someone-long\n",
  );
  assert.deepEqual(state, {});
  await assert.rejects(
    hook.invoke({ ...outputContext({}, ""), point: "pre_execution" } as never, signal),
    /redact_secrets runs at output, not pre_execution/,
  );
});

Deno.test("redact_secrets: secretsFrom takes each named variable from each environment", () => {
  assert.deepEqual(
    secretsFrom(["A", "B", "C"], { A: "from-server", B: " padded-value\n" }, { A: "from-request" }),
    [
      { name: "A", value: "from-server" },
      { name: "A", value: "from-request" },
      { name: "B", value: " padded-value\n" },
      { name: "B", value: "padded-value" },
    ],
  );
});
