/**
 * Environment-variable configuration, validated with zod.
 *
 * Both programs read their settings from the environment (that is how ECS passes them). Each
 * variable is declared with a schema that also says, in words, what it accepts, so that a bad
 * configuration produces one message listing every bad variable and what it would have taken,
 * instead of the first failure only.
 */
import { z } from "zod";

/** Thrown by parseEnv with every problem found; `message` is ready to print. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(
      `invalid configuration (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n` +
        problems.map((p) => `  ${p}`).join("\n"),
    );
    this.name = "ConfigError";
    this.problems = problems;
  }
}

// Environment values are strings; an empty string means "unset" so that `FOO= cmd` falls back to
// the default rather than failing to parse "".
const unsetIfEmpty = (v: unknown) => (typeof v === "string" && v.trim() === "" ? undefined : v);

/**
 * What a variable accepts, as data rather than code, for checks made outside these programs: the
 * Terraform plan checks the containers' environment against it (terraform/container-environment.json,
 * made by `make config-reference`), so a value the program would refuse fails the plan instead of
 * the task. A value is compared as the parsers here read it: trimmed, and a word in lower case.
 * Variables without one (text, addresses, lists) are not checked there.
 */
export type EnvRule =
  | { readonly kind: "integer" | "number"; readonly min: number; readonly max: number }
  | { readonly kind: "word"; readonly values: readonly string[] };

/** The rule of each variable made by the helpers below that has one. */
export const envRules = z.registry<EnvRule>();

// Defaults are given as the string a user would write and go through the same parsing as real
// values (zod's prefault), so a default can never have a different type than a parsed value.
function withDefault<T extends z.ZodType>(schema: T, fallback: string | number | boolean | undefined, accepts: string, rule?: EnvRule) {
  const inner = fallback === undefined ? schema : schema.prefault(String(fallback) as never);
  const field = z.preprocess(unsetIfEmpty, inner).describe(accepts);
  if (rule !== undefined) envRules.add(field as z.ZodType, rule);
  return field;
}

function decimalInteger(opts: { min: number; max: number }) {
  return z
    .string()
    .trim()
    .regex(/^[+-]?\d+$/, "expected a decimal integer")
    .transform(Number)
    .pipe(z.number().int().min(opts.min).max(opts.max));
}

/** An integer in [min, max], written in decimal. */
export function intVar(opts: { min: number; max: number; default?: number }) {
  const accepts = `an integer from ${opts.min} to ${opts.max}`;
  return withDefault(decimalInteger(opts), opts.default, accepts, { kind: "integer", min: opts.min, max: opts.max });
}

/** An integer in [min, max] that may be left unset (then undefined); `accepts` says what it means. */
export function optionalIntVar(opts: { min: number; max: number }, meaning: string) {
  return z
    .preprocess(unsetIfEmpty, decimalInteger(opts).optional())
    .describe(`an integer from ${opts.min} to ${opts.max}: ${meaning}`)
    .register(envRules, { kind: "integer", min: opts.min, max: opts.max });
}

/** A finite number in [min, max]. */
export function numberVar(opts: { min: number; max: number; default?: number }) {
  const accepts = `a number from ${opts.min} to ${opts.max}`;
  return withDefault(z.coerce.number().finite().min(opts.min).max(opts.max), opts.default, accepts, { kind: "number", min: opts.min, max: opts.max });
}

const lowerCaseWord = (v: unknown) => (typeof v === "string" ? v.trim().toLowerCase() : v);

/** One of a fixed list of words (case-insensitive). */
export function enumVar<const T extends readonly [string, ...string[]]>(values: T, fallback?: T[number]) {
  const accepts = `one of: ${values.join(", ")}`;
  return withDefault(z.preprocess(lowerCaseWord, z.enum(values)), fallback, accepts, { kind: "word", values });
}

const BOOLEAN_WORDS = ["true", "false", "1", "0", "yes", "no"] as const;

/** true/false, also 1/0 and yes/no. */
export function boolVar(fallback?: boolean) {
  const schema = z.enum(BOOLEAN_WORDS).transform((v) => v === "true" || v === "1" || v === "yes");
  return withDefault(z.preprocess(lowerCaseWord, schema), fallback, "true or false", { kind: "word", values: BOOLEAN_WORDS });
}

/** A host:port address (host name, IPv4, or [IPv6]). */
export function addressVar(fallback?: string) {
  const schema = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$/, "expected host:port");
  return withDefault(
    schema.refine((v) => {
      const port = Number(v.slice(v.lastIndexOf(":") + 1));
      return port >= 1 && port <= 65535;
    }, "port must be 1..65535"),
    fallback,
    "host:port, for example localhost:8000",
  );
}

/** Any non-empty string. */
export function stringVar(accepts: string, fallback?: string) {
  return withDefault(z.string().min(1), fallback, accepts);
}

/** A string that may be left unset (then undefined). */
export function optionalStringVar(accepts: string) {
  return z.preprocess(unsetIfEmpty, z.string().min(1).optional()).describe(accepts);
}

/**
 * Marks an issue raised by a rule that relates two variables (superRefine), whose message stands on
 * its own: the variable's "accepts" text would only confuse, as its value is valid by itself.
 */
export const CROSS_FIELD = { crossField: true } as const;

function isCrossField(issue: z.core.$ZodIssue): boolean {
  return issue.code === "custom" && (issue.params as { crossField?: boolean } | undefined)?.crossField === true;
}

/**
 * Validates `env` against an object schema whose keys are variable names. Throws ConfigError
 * listing every bad variable, its value and what it accepts.
 */
export function parseEnv<S extends z.ZodObject>(schema: S, env: NodeJS.ProcessEnv = process.env): z.output<S> {
  const picked: Record<string, string | undefined> = {};
  for (const key of Object.keys(schema.shape)) picked[key] = env[key];
  const result = schema.safeParse(picked);
  if (result.success) return result.data;

  const problems: string[] = [];
  const seen = new Set<string>();
  for (const issue of result.error.issues) {
    const key = String(issue.path[0] ?? "");
    if (seen.has(key)) continue; // one line per variable: the "accepts" text covers the rest
    seen.add(key);
    const field = (schema.shape as Record<string, z.ZodType>)[key];
    const value = picked[key];
    const shown = value === undefined ? "unset" : JSON.stringify(value);
    const accepts = field?.description;
    problems.push(
      accepts === undefined || isCrossField(issue)
        ? `${key}=${shown}: ${issue.message}`
        : `${key}=${shown}: accepts ${accepts} (${issue.message})`,
    );
  }
  throw new ConfigError(problems);
}

/**
 * parseEnv for a program's entry point: on a bad configuration prints the message and exits with
 * code 2, the conventional "usage error" status.
 */
export function loadConfigOrExit<S extends z.ZodObject>(program: string, schema: S): z.output<S> {
  try {
    return parseEnv(schema);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${program}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
