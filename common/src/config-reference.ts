/**
 * The configuration reference (docs/configuration.md), made from the zod schemas the programs
 * parse their environment with: each variable's default is what the schema gives when it is unset,
 * what it accepts is the schema's description (the words its error messages use), and what it
 * means comes from a map typed against the schema, so a variable cannot be added without a line
 * here. scripts/config-reference.ts writes the file; a test fails when it differs.
 */
import { z } from "zod";
import { envRules, type EnvRule } from "./env.ts";

export interface VariableDoc {
  /** What the variable does, in a sentence or two of Markdown. */
  meaning: string;
  /** The default as words, where the schema's depends on the machine (cores, home directory) or on other variables. */
  default?: string;
}

/** One entry per variable of `S`: a missing or unknown name is a type error. */
export type ConfigDocs<S extends z.ZodObject> = { readonly [K in keyof S["shape"]]: VariableDoc };

/** The Markdown table of `schema`'s variables, in their declaration order. */
export function configTable<S extends z.ZodObject>(schema: S, docs: ConfigDocs<S>): string {
  const rows = Object.entries(schema.shape).map(([name, field]) => {
    const doc = (docs as Record<string, VariableDoc | undefined>)[name];
    if (doc === undefined) throw new Error(`no documentation for ${name}`);
    const accepts = z.globalRegistry.get(field as z.ZodType)?.description ?? "";
    return `| \`${name}\` | ${doc.default ?? defaultOf(field as z.ZodType)} | ${cell(accepts)} | ${cell(doc.meaning)} |`;
  });
  return ["| Variable | Default | Accepts | Meaning |", "| --- | --- | --- | --- |", ...rows].join("\n");
}

/** What `field` gives when the variable is unset, as Markdown. */
function defaultOf(field: z.ZodType): string {
  const r = field.safeParse(undefined);
  if (!r.success || r.data === undefined) return "unset";
  return `\`${Array.isArray(r.data) ? r.data.join(",") : String(r.data)}\``;
}

/** Text for a table cell: a `|` would end it. */
function cell(text: string): string {
  return text.replaceAll("|", "\\|");
}

/** A variable's rule with the words its error message uses. */
export type DescribedRule = EnvRule & { readonly accepts: string };

/** The variables of `schema` that have a rule (envRules), in declaration order. */
export function environmentRules(schema: z.ZodObject): Record<string, DescribedRule> {
  const rules: Record<string, DescribedRule> = {};
  for (const [name, field] of Object.entries(schema.shape)) {
    const rule = envRules.get(field as z.ZodType);
    if (rule !== undefined) rules[name] = { ...rule, accepts: z.globalRegistry.get(field as z.ZodType)?.description ?? "" };
  }
  return rules;
}
