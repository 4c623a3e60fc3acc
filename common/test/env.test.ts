import t, { type Test } from "tap";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { addressVar, boolVar, ConfigError, enumVar, intVar, numberVar, parseEnv, stringVar } from "../src/env.ts";
import { serverEnvSchema } from "../../server/src/config.ts";
import { workerEnvSchema } from "../../worker/src/config.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

/** parseEnv that must fail: returns the ConfigError's problems. */
function problemsOf<S extends z.ZodObject>(t: Test, schema: S, env: Record<string, string>): readonly string[] {
  try {
    parseEnv(schema, env);
  } catch (err) {
    t.type(err, ConfigError, `${JSON.stringify(env)} throws ConfigError`);
    return (err as ConfigError).problems;
  }
  t.fail(`${JSON.stringify(env)} was accepted, expected a ConfigError`);
  return [];
}

t.test("server defaults apply when variables are unset or empty", async (t) => {
  for (const [label, env] of [
    ["unset", {}],
    ["empty string", { SERVER_MODE: "", TOTAL_WORKERS_EXPECTED: "", LEARNING_RATE: "  ", OPTIMIZER: "", LEASE_MS: "", SERVER_HOST: "" }],
  ] as const) {
    const c = parseEnv(serverEnvSchema, env);
    t.equal(c.SERVER_MODE, "sync", `${label}: SERVER_MODE defaults to sync`);
    t.equal(c.TOTAL_WORKERS_EXPECTED, 4, `${label}: TOTAL_WORKERS_EXPECTED defaults to 4`);
    t.equal(c.LEARNING_RATE, 0.1, `${label}: LEARNING_RATE defaults to 0.1`);
    t.equal(c.OPTIMIZER, "sgd", `${label}: OPTIMIZER defaults to sgd`);
    t.equal(c.LEASE_MS, 10_000, `${label}: LEASE_MS defaults to 10000`);
    t.equal(c.SERVER_HOST, "0.0.0.0", `${label}: SERVER_HOST defaults to 0.0.0.0`);
    t.equal(c.SERVER_PORT, 8000, `${label}: SERVER_PORT defaults to 8000`);
    t.equal(c.MAX_CHUNK_BYTES, (4 << 20) - (16 << 10), `${label}: MAX_CHUNK_BYTES defaults to 4 MiB - 16 KiB (4177920): a message then fits 4 MiB`);
  }
});

t.test("worker defaults apply when variables are unset or empty", async (t) => {
  for (const [label, env] of [
    ["unset", {}],
    ["empty string", { PARAMETER_SERVER_ADDRESS: "", BATCH_SIZE: "", WORKER_SLOT: "", TF_BACKEND: "" }],
  ] as const) {
    const c = parseEnv(workerEnvSchema, env);
    t.equal(c.PARAMETER_SERVER_ADDRESS, "localhost:8000", `${label}: address defaults to localhost:8000`);
    t.equal(c.BATCH_SIZE, 32, `${label}: BATCH_SIZE defaults to 32`);
    t.equal(c.WORKER_SLOT, -1, `${label}: WORKER_SLOT defaults to -1 (any)`);
    t.equal(c.TF_BACKEND, "wasm", `${label}: TF_BACKEND defaults to wasm`);
    t.equal(c.WORKER_LABEL, `pid ${process.pid}`, `${label}: WORKER_LABEL defaults to the pid`);
  }
});

t.test("boolean defaults are booleans, not strings", async (t) => {
  const c = parseEnv(serverEnvSchema, {});
  // NESTEROV defaults to false; a string "false" would be truthy and silently turn Nesterov on.
  t.equal(c.NESTEROV, false, "NESTEROV defaults to the boolean false");
  t.equal(c.EXIT_ON_COMPLETE, true, "EXIT_ON_COMPLETE defaults to the boolean true");
  const empty = parseEnv(serverEnvSchema, { NESTEROV: "" });
  t.equal(empty.NESTEROV, false, "NESTEROV='' falls back to the boolean false");
  const own = parseEnv(z.object({ FLAG: boolVar(false) }), {});
  t.equal(typeof own.FLAG, "boolean", "boolVar(false) default has type boolean");
});

t.test("one ConfigError lists every bad variable with its value and what it accepts", async (t) => {
  const problems = problemsOf(t, serverEnvSchema, { SERVER_MODE: "fast", TOTAL_WORKERS_EXPECTED: "0", LEARNING_RATE: "abc" });
  t.equal(problems.length, 3, "3 bad variables -> 3 problems");
  const line = (name: string) => problems.find((p) => p.startsWith(`${name}=`)) ?? "";
  t.match(line("SERVER_MODE"), 'SERVER_MODE="fast"', "SERVER_MODE problem shows the value");
  t.match(line("SERVER_MODE"), "one of: sync, async, ssp", "SERVER_MODE problem says what it accepts");
  t.match(line("TOTAL_WORKERS_EXPECTED"), 'TOTAL_WORKERS_EXPECTED="0"', "TOTAL_WORKERS_EXPECTED problem shows the value");
  t.match(line("TOTAL_WORKERS_EXPECTED"), "an integer from 1 to 1024", "TOTAL_WORKERS_EXPECTED problem says what it accepts");
  t.match(line("LEARNING_RATE"), 'LEARNING_RATE="abc"', "LEARNING_RATE problem shows the value");
  t.match(line("LEARNING_RATE"), "a number from 0 to 100", "LEARNING_RATE problem says what it accepts");

  try {
    parseEnv(serverEnvSchema, { SERVER_MODE: "fast", TOTAL_WORKERS_EXPECTED: "0", LEARNING_RATE: "abc" });
  } catch (err) {
    const msg = (err as Error).message;
    t.match(msg, /^invalid configuration \(3 problems\):\n/, "message header counts the problems");
    t.equal(msg.split("\n").length, 4, "header + one line per problem");
  }
  const one = problemsOf(t, serverEnvSchema, { SERVER_PORT: "1.5" });
  t.equal(one.length, 1, "a single bad variable gives a single problem");
  t.match(one[0], /^SERVER_PORT="1.5": accepts an integer from 0 to 65535/, "non-integer port is refused, naming the range");
  const err = new ConfigError(["X=1: nope"]);
  t.match(err.message, /^invalid configuration \(1 problem\):\n  X=1: nope$/, "singular 'problem' for one problem");
});

t.test("number and integer variables", async (t) => {
  t.equal(parseEnv(serverEnvSchema, { LEARNING_RATE: "0.003" }).LEARNING_RATE, 0.003, "LEARNING_RATE=0.003 parses");
  t.equal(parseEnv(serverEnvSchema, { SERVER_PORT: " 9000 " }).SERVER_PORT, 9000, "surrounding blanks are tolerated");
  t.throws(() => parseEnv(serverEnvSchema, { LEASE_MS: "1e3" }), /LEASE_MS="1e3": accepts an integer/, "integers must be written in decimal (1e3 is refused)");
  t.throws(() => parseEnv(serverEnvSchema, { LEASE_MS: "0x400" }), /LEASE_MS="0x400"/, "hex is refused");
  t.equal(problemsOf(t, serverEnvSchema, { LEARNING_RATE: "Infinity" }).length, 1, "Infinity is not a finite number");
  t.equal(problemsOf(t, serverEnvSchema, { LEARNING_RATE: "101" }).length, 1, "101 is above LEARNING_RATE's max 100");
  t.equal(problemsOf(t, serverEnvSchema, { LEASE_MS: "99" }).length, 1, "99 is below LEASE_MS's min 100");
  const s = z.object({ N: intVar({ min: -1, max: 3 }), F: numberVar({ min: 0, max: 1 }) });
  const missing = problemsOf(t, s, {});
  t.equal(missing.length, 2, "variables without a default are required");
  t.match(missing[0], /^N=unset: accepts an integer from -1 to 3/, "a missing variable is shown as unset");
});

t.test("enums are case-insensitive", async (t) => {
  t.equal(parseEnv(serverEnvSchema, { SERVER_MODE: "ASYNC" }).SERVER_MODE, "async", "ASYNC -> async");
  t.equal(parseEnv(serverEnvSchema, { SERVER_MODE: " Ssp " }).SERVER_MODE, "ssp", "' Ssp ' -> ssp");
  t.equal(parseEnv(serverEnvSchema, { OPTIMIZER: "Adam" }).OPTIMIZER, "adam", "Adam -> adam");
  t.equal(parseEnv(serverEnvSchema, { LOG_LEVEL: "DEBUG" }).LOG_LEVEL, "debug", "DEBUG -> debug");
  const own = z.object({ E: enumVar(["alpha", "beta"], "alpha") });
  t.equal(parseEnv(own, { E: "BETA" }).E, "beta", "enumVar: BETA -> beta");
  t.equal(parseEnv(own, { E: " Beta\t" }).E, "beta", "enumVar: blanks trimmed, case folded");
  t.equal(parseEnv(own, {}).E, "alpha", "enumVar: default when unset");
  const p = problemsOf(t, z.object({ E: enumVar(["a", "b"]) }), { E: "c" });
  t.match(p[0], /^E="c": accepts one of: a, b/, "a bad enum value names the choices");
});

t.test("booleans accept true/false, 1/0, yes/no in any case", async (t) => {
  const cases: [string, boolean][] = [
    ["true", true],
    ["TRUE", true],
    ["1", true],
    ["yes", true],
    ["Yes", true],
    ["false", false],
    ["False", false],
    ["0", false],
    ["no", false],
    ["NO", false],
  ];
  for (const [raw, want] of cases) t.equal(parseEnv(serverEnvSchema, { NESTEROV: raw }).NESTEROV, want, `NESTEROV=${raw} -> ${want}`);
  const p = problemsOf(t, serverEnvSchema, { EXIT_ON_COMPLETE: "maybe" });
  t.match(p[0], /^EXIT_ON_COMPLETE="maybe": accepts true or false/, "'maybe' is refused");
});

t.test("addressVar accepts host:port and [ipv6]:port only", async (t) => {
  for (const ok of ["host:8000", "localhost:1", "10.0.0.7:65535", "[::1]:8000", "ps.internal-1.example:443"]) {
    t.equal(parseEnv(workerEnvSchema, { PARAMETER_SERVER_ADDRESS: ok }).PARAMETER_SERVER_ADDRESS, ok, `${ok} is accepted`);
  }
  for (const bad of ["localhost", "host:99999", "host:0", "host:", ":8000", "::1:8000", "http://host:8000"]) {
    const p = problemsOf(t, workerEnvSchema, { PARAMETER_SERVER_ADDRESS: bad });
    t.match(p[0], `PARAMETER_SERVER_ADDRESS=${JSON.stringify(bad)}: accepts host:port`, `${bad} is refused`);
  }
  const only = parseEnv(z.object({ A: addressVar(), S: stringVar("anything") }), { A: "[::1]:1", S: "x" });
  t.same(only, { A: "[::1]:1", S: "x" }, "addressVar/stringVar without defaults pass values through");
});

t.test("cross-field rule: cosine schedule with LR_MIN above LEARNING_RATE", async (t) => {
  const p = problemsOf(t, serverEnvSchema, { LR_SCHEDULE: "cosine", LEARNING_RATE: "0.1", LR_MIN: "0.5" });
  t.equal(p.length, 1, "one problem");
  t.match(p[0], /^LR_MIN="0.5"/, "the problem names LR_MIN and its value");
  t.match(p[0], /must not exceed LEARNING_RATE \(0.1\)/, "and says it must not exceed LEARNING_RATE");
  t.equal(parseEnv(serverEnvSchema, { LR_SCHEDULE: "cosine", LEARNING_RATE: "0.1", LR_MIN: "0.1" }).LR_MIN, 0.1, "LR_MIN equal to LEARNING_RATE is fine");
  t.equal(parseEnv(serverEnvSchema, { LR_SCHEDULE: "step", LEARNING_RATE: "0.1", LR_MIN: "0.5" }).LR_MIN, 0.5, "the rule only applies to cosine");
});

function runEntry(script: string, env: Record<string, string>) {
  const clean: Record<string, string> = { PATH: process.env.PATH ?? "" };
  return spawnSync(process.execPath, [script], { cwd: repoRoot, env: { ...clean, ...env }, encoding: "utf8", timeout: 15_000 });
}

t.test("the server entry point exits 2 listing every bad variable", async (t) => {
  const r = runEntry("server/src/main.ts", { SERVER_MODE: "fast", TOTAL_WORKERS_EXPECTED: "0" });
  t.equal(r.status, 2, "exit code 2 (usage error)");
  t.match(r.stderr, /^server: invalid configuration \(2 problems\)/, "stderr starts with the program name and problem count");
  t.match(r.stderr, 'SERVER_MODE="fast": accepts one of: sync, async, ssp', "stderr names SERVER_MODE");
  t.match(r.stderr, 'TOTAL_WORKERS_EXPECTED="0": accepts an integer from 1 to 1024', "stderr names TOTAL_WORKERS_EXPECTED");
});

t.test("the worker entry point exits 2 listing every bad variable", async (t) => {
  const r = runEntry("worker/src/main.ts", { PARAMETER_SERVER_ADDRESS: "nope", BATCH_SIZE: "0" });
  t.equal(r.status, 2, "exit code 2 (usage error)");
  t.match(r.stderr, /^worker: invalid configuration \(2 problems\)/, "stderr starts with the program name and problem count");
  t.match(r.stderr, 'PARAMETER_SERVER_ADDRESS="nope": accepts host:port', "stderr names PARAMETER_SERVER_ADDRESS");
  t.match(r.stderr, 'BATCH_SIZE="0": accepts an integer from 1 to 65536', "stderr names BATCH_SIZE");
});
