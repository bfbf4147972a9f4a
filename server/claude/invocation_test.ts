import assert from "node:assert/strict";
import {
  claudeArgv,
  claudeInvocation,
  claudeInvocations,
  shellQuoteArgv,
  splitScript,
} from "./invocation.ts";

Deno.test("invocation: claude is recognised behind wrappers, paths, assignments and operators", () => {
  const cases: [string, string | null][] = [
    [`claude -p "fix the tests"`, "fix the tests"],
    [`cd repo && claude -p "fix it" --output-format stream-json --verbose`, "fix it"],
    [`git pull; claude -p x | tee out.txt`, "x"],
    [`false || claude --print 'a b'`, "a b"],
    [`(cd repo; claude -p sub)`, "sub"],
    [`{ claude -p grouped; }`, "grouped"],
    [`if claude -p cond; then echo ok; fi`, "cond"],
    [`for f in *.md; do claude -p "review $f"; done`, "review $f"],
    [`while read -r line; do claude -p "$line"; done < list`, "$line"],
    [`! claude -p negated`, "negated"],
    [`FOO=bar BAZ="x y" claude -p assigned`, "assigned"],
    [`env claude -p e1`, "e1"],
    [`env -i PATH=/usr/bin HOME=/tmp claude -p e2`, "e2"],
    [`env -u HOME -C /repo claude -p e3`, "e3"],
    [`env -S 'claude -p split'`, "split"],
    [`npx @anthropic-ai/claude-code -p n1`, "n1"],
    [`npx -y @anthropic-ai/claude-code@latest -p n2`, "n2"],
    [`npx --yes @anthropic-ai/claude-code@2.1.197 -p n3`, "n3"],
    [`npx claude -p n4`, "n4"],
    [`npx -p @anthropic-ai/claude-code claude -p n5`, "n5"],
    [`npx --package=@anthropic-ai/claude-code -- claude -p n6`, "n6"],
    [`npx -c 'claude -p n7'`, "n7"],
    [`bunx @anthropic-ai/claude-code -p n8`, "n8"],
    [`pnpm dlx @anthropic-ai/claude-code -p n9`, "n9"],
    [`npm exec -- @anthropic-ai/claude-code -p n10`, "n10"],
    [`/usr/local/bin/claude -p p1`, "p1"],
    [`./node_modules/.bin/claude -p p2`, "p2"],
    [`~/.claude/local/claude -p p3`, "p3"],
    [`"$HOME/.local/bin/claude" -p p4`, "p4"],
    [`'claude' -p quoted`, "quoted"],
    [`stdbuf -oL claude -p s1`, "s1"],
    [`stdbuf -o L -e L claude -p s2`, "s2"],
    [`stdbuf --output=L claude -p s3`, "s3"],
    [`nice claude -p w1`, "w1"],
    [`nice -n 10 claude -p w2`, "w2"],
    [`nice -10 claude -p w3`, "w3"],
    [`timeout 60 claude -p w4`, "w4"],
    [`timeout -s KILL -k 5 10m claude -p w5`, "w5"],
    [`timeout --foreground 60 claude -p w6`, "w6"],
    [`nohup claude -p w7 > out.log 2>&1 &`, "w7"],
    [`exec claude -p w8`, "w8"],
    [`command claude -p w9`, "w9"],
    [`sudo -u bob -E claude -p w10`, "w10"],
    [`time claude -p w11`, "w11"],
    [`setsid claude -p w12`, "w12"],
    [`nice -n 5 timeout 60 stdbuf -oL nohup env A=1 claude -p stacked`, "stacked"],
    [`find . -name '*.ts' | xargs -I{} claude -p "review {}"`, "review {}"],
    [`sh -c 'claude -p "in sh"'`, "in sh"],
    [`bash -lc "cd x && claude -p inner"`, "inner"],
    [`bash -e -o pipefail -c 'claude -p opts'`, "opts"],
    [`out=$(claude -p subst)`, "subst"],
    [`echo "$(claude -p "in quotes")"`, "in quotes"],
    ["echo `claude -p backquoted`", "backquoted"],
    [`diff <(claude -p procsub) expected.txt`, "procsub"],
    ["echo start\nclaude -p 'second line'", "second line"],
    ["claude -p 'spans\nlines'", "spans\nlines"],
    ["claude \\\n  -p continued", "continued"],
    [`claude -p x 2>&1 | tee log`, "x"],
    [`claude -p 5 2> err.txt`, "5"],
    [`claude -p "a#b" # a comment`, "a#b"],
    [`echo a#b; claude -p after-hash`, "after-hash"],
    [`claude -p $'ansi\\tquoted'`, "ansi\tquoted"],
    [`echo hi | claude -p`, null],
    [`claude -p < prompt.txt`, null],
    [`claude "interactive prompt"`, "interactive prompt"],
  ];
  for (const [command, prompt] of cases) {
    const run = claudeInvocation(command);
    assert.ok(run !== null, `not recognised: ${JSON.stringify(command)}`);
    assert.equal(run.prompt, prompt, JSON.stringify(command));
  }
});

Deno.test("invocation: words that merely mention claude are not a run", () => {
  const cases = [
    `echo claude`,
    `echo "claude -p x"`,
    `echo 'claude -p x'`,
    `grep claude file.txt`,
    `grep -r "claude -p" .`,
    `cat claude.md`,
    `claude-foo -p x`,
    `myclaude -p x`,
    `claudex -p x`,
    `./claude.sh -p x`,
    `/opt/claude/bin/tool -p x`,
    `# claude -p x`,
    `echo hi # claude -p x`,
    `ls -la # then: claude -p x`,
    `command -v claude`,
    `command -V claude`,
    `which claude`,
    `type claude`,
    `man claude`,
    `npm install -g @anthropic-ai/claude-code`,
    `npx create-claude-app`,
    `npx claude-code -p x`,
    `git commit -m "claude -p x"`,
    `CLAUDE=1 make test`,
    `sh script-that-runs-claude.sh`,
    `bash claude`,
    `echo $(echo claude)`,
    `cat <<EOF\nclaude -p in-heredoc\nEOF`,
    `cat <<-'END'\n\tclaude is great\n\tEND\necho done`,
    `printf '%s\\n' claude`,
    `docker run image claude -p x`,
    `ssh host claude -p x`,
    ``,
    `   `,
  ];
  for (const command of cases) {
    assert.equal(claudeInvocation(command), null, `false positive: ${JSON.stringify(command)}`);
  }
});

Deno.test("invocation: argv, output format, model and flags are read as Claude's parser reads them", () => {
  const run = claudeInvocation(
    `cd /repo && FOO=1 claude --model opus -p "review this" --output-format=stream-json --verbose 2>&1 | tee out`,
  );
  assert.deepEqual(run, {
    argv: [
      "claude",
      "--model",
      "opus",
      "-p",
      "review this",
      "--output-format=stream-json",
      "--verbose",
    ],
    program: "claude",
    print: true,
    prompt: "review this",
    outputFormat: "stream-json",
    model: "opus",
    verbose: true,
  });
  const npx = claudeInvocation(
    `npx -y @anthropic-ai/claude-code@latest -p hi --output-format json`,
  );
  assert.equal(npx?.program, "@anthropic-ai/claude-code@latest");
  assert.equal(npx?.outputFormat, "json");
  assert.equal(claudeInvocation(`claude -p x --output-format xml`)?.outputFormat, "text");
  assert.equal(claudeInvocation(`claude -p x`)?.outputFormat, "text");
  assert.equal(claudeInvocation(`claude x`)?.print, false);
  assert.equal(claudeInvocation(`claude -pc x`)?.print, true, "clustered flags");
  assert.equal(claudeInvocation(`claude -p --model=sonnet x`)?.model, "sonnet");
});

Deno.test("invocation: options that take values do not leave their value as the prompt", () => {
  const prompt = (command: string) => claudeInvocation(command)?.prompt;
  assert.equal(prompt(`claude -p --max-turns 3 --permission-mode acceptEdits "do it"`), "do it");
  assert.equal(prompt(`claude -p --system-prompt "be brief" "do it"`), "do it");
  assert.equal(prompt(`claude -p --resume abc "do it"`), "do it", "--resume takes its value");
  assert.equal(prompt(`claude -p --resume --verbose "do it"`), "do it", "optional value");
  assert.equal(prompt(`claude --allowedTools Bash Edit -p "do it"`), "do it");
  // commander's variadic options swallow the following words: so does Claude.
  assert.equal(prompt(`claude -p --allowedTools Bash Edit "do it"`), null);
  // `-rf` is `-r f` to commander (Claude 2.1.197: "--resume requires a valid session ID...").
  assert.equal(prompt(`claude -p -rf`), null);
  assert.equal(prompt(`claude -p -- -rf`), "-rf");
  assert.equal(prompt(`claude -p -- --help`), "--help");
});

Deno.test("invocation: subcommands are told apart from prompts; every run is listed", () => {
  assert.equal(claudeInvocation(`claude mcp list`)?.subcommand, "mcp");
  assert.equal(claudeInvocation(`claude mcp list`)?.prompt, null);
  assert.equal(claudeInvocation(`claude update`)?.subcommand, "update");
  assert.equal(claudeInvocation(`claude -p "update the readme"`)?.subcommand, undefined);
  assert.equal(claudeInvocation(`claude --version`)?.prompt, null);
  const all = claudeInvocations(
    `claude -p one && npx @anthropic-ai/claude-code -p two\nclaude -p three`,
  );
  assert.deepEqual(all.map((run) => run.prompt), ["one", "two", "three"]);
  // A command substitution runs before the command line that holds it, and is listed before it.
  const nested = claudeInvocations(`claude -p outer; x=$(claude -p inner)`);
  assert.deepEqual(nested.map((run) => run.prompt), ["inner", "outer"]);
});

Deno.test("invocation: splitScript drops comments and here-document bodies and lifts substitutions", () => {
  assert.deepEqual(splitScript("a # c\nb"), [{ kind: "line", text: "a " }, {
    kind: "line",
    text: "b",
  }]);
  assert.deepEqual(splitScript("cat <<EOF\nbody\nEOF\nnext"), [
    { kind: "line", text: "cat <<EOF" },
    { kind: "line", text: "next" },
  ]);
  assert.deepEqual(splitScript('x=$(a "$(b)")'), [
    { kind: "script", text: 'a "$(b)"' },
    { kind: "line", text: "x=__cc_substitution__" },
  ]);
  assert.deepEqual(splitScript("echo $((1 + 2))"), [{ kind: "line", text: "echo 0" }]);
  // Unterminated quotes and substitutions do not throw.
  assert.doesNotThrow(() => claudeInvocation(`claude -p "unterminated`));
  assert.doesNotThrow(() => claudeInvocation("echo $(claude -p x"));
  assert.doesNotThrow(() => claudeInvocation("echo `claude -p x"));
  assert.equal(claudeInvocation(`claude -p "unterminated`)?.prompt, "unterminated");
});

// Prompts built to break out of quoting: quotes, expansions, substitutions, newlines, globs,
// operators, option-like words, unicode, control characters, and a long one.
const HOSTILE = [
  "plain",
  "it's",
  "'",
  "''",
  "'\\''",
  '"',
  '"$(touch /tmp/cc-pwned)"',
  "$(touch /tmp/cc-pwned)",
  "`touch /tmp/cc-pwned`",
  "${IFS}x",
  "$HOME",
  "$((1+1))",
  "$'\\x41'",
  "\\",
  "\\'",
  "\\n",
  "a\nb",
  "\n",
  "\r\n",
  "\t",
  " leading and trailing ",
  "*",
  "?",
  "[a-z]*",
  "~",
  "~root/x",
  "#not a comment",
  "; touch /tmp/cc-pwned",
  "&& touch /tmp/cc-pwned",
  "| cat",
  "> /tmp/cc-pwned",
  "< /etc/passwd",
  "{a,b}",
  "!",
  "!!",
  "-rf",
  "--",
  "-",
  "-p",
  "--help",
  "--output-format=json",
  "a=b",
  "=",
  "%s",
  "%s\\0",
  "EOF\ntouch /tmp/cc-pwned\nEOF",
  "é ñ 中文 🎉",
  "\u202e right-to-left",
  "\u0001\u001b[31m\u007f control",
  "x".repeat(100_000),
];

async function shellWords(shell: string, words: string[]): Promise<string[]> {
  const script = `printf '%s\\0' ${shellQuoteArgv(words)}`;
  const { code, stdout, stderr } = await new Deno.Command(shell, {
    args: ["-c", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const parts = new TextDecoder().decode(stdout).split("\0");
  assert.equal(parts.pop(), "", "printf ends each word with a NUL");
  return parts;
}

Deno.test("invocation: shellQuoteArgv gives a real sh back exactly the argv, whatever it holds", async () => {
  const shells = ["sh", "bash"].filter((shell) => {
    try {
      return new Deno.Command("sh", { args: ["-c", `command -v ${shell}`] }).outputSync().success;
    } catch {
      return false;
    }
  });
  assert.ok(shells.includes("sh"));
  for (const shell of shells) {
    for (const word of HOSTILE) {
      assert.deepEqual(
        await shellWords(shell, [word]),
        [word],
        `${shell}: ${JSON.stringify(word.slice(0, 60))}`,
      );
    }
    const small = HOSTILE.filter((word) => word.length < 1000);
    assert.deepEqual(await shellWords(shell, small), small, `${shell}: all at once`);
    assert.deepEqual(await shellWords(shell, [""]), [""], "the empty word survives");
  }
});

Deno.test("invocation: a built claude argv keeps any prompt whole, after --, and reads back the same", () => {
  for (const prompt of HOSTILE.filter((word) => word.trim() !== "")) {
    for (const outputFormat of ["text", "json", "stream-json"] as const) {
      const argv = claudeArgv(prompt, { outputFormat, model: "opus" });
      assert.equal(argv.at(-1), prompt);
      assert.equal(argv.at(-2), "--");
      const read = claudeInvocation(shellQuoteArgv(argv));
      assert.ok(read !== null, JSON.stringify(prompt.slice(0, 60)));
      assert.equal(read.prompt, prompt);
      assert.equal(read.outputFormat, outputFormat);
      assert.equal(read.model, "opus");
      assert.equal(read.verbose, outputFormat === "stream-json");
    }
  }
});

Deno.test("invocation: claudeArgv's exact shape and its refusals", () => {
  assert.deepEqual(claudeArgv("hi"), ["claude", "-p", "--", "hi"]);
  assert.deepEqual(
    claudeArgv("hi", {
      outputFormat: "stream-json",
      model: "-weird",
      extraArgs: ["--max-turns=3"],
    }),
    [
      "claude",
      "-p",
      "--output-format=stream-json",
      "--verbose",
      "--model=-weird",
      "--max-turns=3",
      "--",
      "hi",
    ],
  );
  assert.deepEqual(
    claudeArgv("hi", { program: "/opt/bin/claude", extraArgs: ["--allowedTools=Bash Edit"] }),
    ["/opt/bin/claude", "-p", "--allowedTools=Bash Edit", "--", "hi"],
  );
  assert.throws(() => claudeArgv("   "), /the prompt is empty/);
  assert.throws(() => claudeArgv("a\0b"), /word 3 contains a NUL/);
  assert.throws(() => claudeArgv("hi", { model: "" }), /the model is empty/);
  // Extra arguments fail closed: known long options only, values attached.
  assert.throws(() => claudeArgv("hi", { extraArgs: ["--model"] }), /needs its value attached/);
  assert.throws(() => claudeArgv("hi", { extraArgs: ["stray"] }), /not a known long option/);
  assert.throws(() => claudeArgv("hi", { extraArgs: ["-n"] }), /not a known long option/);
  assert.throws(() => claudeArgv("hi", { extraArgs: ["--no-such"] }), /not a known long option/);
  for (const own of ["--print", "--input-format=text", "--output-format=json", "--verbose"]) {
    assert.throws(() => claudeArgv("hi", { extraArgs: [own] }), /set by cc-executor itself/, own);
  }
  // An optional value never takes "--" (commander), so this one is safe.
  assert.deepEqual(claudeArgv("hi", { extraArgs: ["--resume"] }).slice(-3), [
    "--resume",
    "--",
    "hi",
  ]);
  assert.throws(() => shellQuoteArgv(["a\0"]), /word 0 contains a NUL/);
  assert.throws(() => shellQuoteArgv(["ok", "\ud800"]), /word 1 contains a lone UTF-16 surrogate/);
});

Deno.test("invocation: shellQuoteArgv leaves plainly safe words bare and quotes the rest", () => {
  assert.equal(
    shellQuoteArgv(["claude", "-p", "--model=opus", "--", "a b"]),
    "claude -p '--model=opus' -- 'a b'",
  );
  assert.equal(shellQuoteArgv(["it's"]), `'it'\\''s'`);
  assert.equal(shellQuoteArgv([""]), "''");
  assert.equal(shellQuoteArgv(["/usr/bin/claude", "a=b", "~"]), "/usr/bin/claude 'a=b' '~'");
});
