/**
 * A run's identity: the settings every worker of a run must share so that their slices of the data
 * and their models fit together. A worker sends its own at registration as the job fingerprint,
 * space-separated `key=value` pairs in a fixed order:
 *
 *   dataset=mnist model=cnn seed=42 batch=64 epochs=5 train=60000 local=1 classes=10
 *
 * The server compares it with the run's: the fields its own configuration names (DATASET, SEED, ...:
 * then a mismatching worker is refused whoever registers first), and the first registration's for
 * the rest.
 */

/** The fields of a fingerprint in order, and the environment variable that sets each (on both sides). */
export const IDENTITY_FIELDS = [
  { key: "dataset", variable: "DATASET" },
  { key: "model", variable: "MODEL" },
  { key: "seed", variable: "SEED" },
  { key: "batch", variable: "BATCH_SIZE" },
  { key: "epochs", variable: "EPOCHS" },
  { key: "train", variable: "TRAIN_EXAMPLES" },
  { key: "local", variable: "LOCAL_STEPS" },
  // Derived from the data (CIFAR100_LABELS): no variable of its own on the server.
  { key: "classes", variable: undefined },
] as const;

export type IdentityKey = (typeof IDENTITY_FIELDS)[number]["key"];
export type Identity = Partial<Record<IdentityKey, string | number>>;

/** The fingerprint of `identity`, fields in IDENTITY_FIELDS order. */
export function formatFingerprint(identity: Identity): string {
  return IDENTITY_FIELDS.flatMap(({ key }) => (identity[key] === undefined ? [] : [`${key}=${identity[key]}`])).join(" ");
}

/**
 * The fields of a fingerprint; undefined when it is not one (an opaque string, such as a fingerprint
 * from before this format, which can only be compared whole).
 */
export function parseFingerprint(fingerprint: string): Map<string, string> | undefined {
  const fields = new Map<string, string>();
  for (const pair of fingerprint.split(" ")) {
    const m = /^([a-z]+)=(.*)$/.exec(pair);
    if (m === null) return undefined;
    fields.set(m[1]!, m[2]!);
  }
  return fields.size > 0 ? fields : undefined;
}

/**
 * How `fingerprint` differs from what the run requires, in words, or undefined when it does not.
 * `configured` are the fields the server's configuration fixes; `pinned` is the run's fingerprint
 * (the first registration's, or a checkpoint's), which fixes every field.
 */
export function identityMismatch(fingerprint: string, configured: Identity, pinned: string | undefined): string | undefined {
  const fields = parseFingerprint(fingerprint);
  const differences: string[] = [];
  for (const { key, variable } of IDENTITY_FIELDS) {
    const required = configured[key];
    if (required === undefined) continue;
    const got = fields?.get(key);
    if (got !== String(required)) differences.push(`${key} ${got ?? "(not sent)"} where the server's ${variable} is ${required}`);
  }
  if (differences.length === 0 && pinned !== undefined && fingerprint !== pinned) {
    const run = parseFingerprint(pinned);
    if (fields === undefined || run === undefined) {
      differences.push(`job "${fingerprint}" where the run's is "${pinned}"`);
    } else {
      for (const key of new Set([...run.keys(), ...fields.keys()])) {
        if (run.get(key) !== fields.get(key)) differences.push(`${key} ${fields.get(key) ?? "(not sent)"} where the run's is ${run.get(key) ?? "(none)"}`);
      }
    }
  }
  return differences.length === 0 ? undefined : differences.join(", ");
}

/** The fields of the server's configuration that fix the run's identity (unset ones are left out). */
export function configuredIdentity(env: Readonly<Record<string, unknown>>): Identity {
  const identity: Identity = {};
  for (const { key, variable } of IDENTITY_FIELDS) {
    const value = variable === undefined ? undefined : env[variable];
    if (typeof value === "string" || typeof value === "number") identity[key] = value;
  }
  return identity;
}
