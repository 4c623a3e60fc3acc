/**
 * The job fingerprint: what workers send at registration and the server compares with the run's.
 */
import t from "tap";
import { configuredIdentity, formatFingerprint, identityMismatch, parseFingerprint } from "../src/job-identity.ts";

const worker = formatFingerprint({ classes: 10, dataset: "mnist", model: "cnn", seed: 42, batch: 64, epochs: 5, train: 60000, local: 1 });

t.test("a fingerprint lists its fields in a fixed order and parses back", async (t) => {
  t.equal(worker, "dataset=mnist model=cnn seed=42 batch=64 epochs=5 train=60000 local=1 classes=10", "the order of IDENTITY_FIELDS, whatever the object's");
  t.same(Object.fromEntries(parseFingerprint(worker)!), { dataset: "mnist", model: "cnn", seed: "42", batch: "64", epochs: "5", train: "60000", local: "1", classes: "10" }, "parsed back");
  t.equal(parseFingerprint("synthetic:mlp:classes=10:seed=42"), undefined, "an older, opaque fingerprint is not parsed");
});

t.test("the server's configured fields and the run's pinned fingerprint decide a mismatch", async (t) => {
  t.equal(identityMismatch(worker, {}, undefined), undefined, "nothing configured, nothing pinned: anything goes");
  t.equal(identityMismatch(worker, { seed: 42, dataset: "mnist" }, undefined), undefined, "matching configured fields");
  t.equal(identityMismatch(worker, { seed: 7 }, undefined), "seed 42 where the server's SEED is 7", "a configured field differs: named with its variable");
  t.equal(identityMismatch("dataset=mnist", { batch: 32 }, undefined), "batch (not sent) where the server's BATCH_SIZE is 32", "a field the worker did not send");
  const other = worker.replace("train=60000", "train=1000");
  t.equal(identityMismatch(other, {}, worker), "train 1000 where the run's is 60000", "a pinned fingerprint fixes every field");
  t.equal(identityMismatch("a:b", {}, "a:c"), 'job "a:b" where the run\'s is "a:c"', "opaque fingerprints are compared whole");
});

t.test("configuredIdentity takes the set variables of the server's configuration", async (t) => {
  t.same(configuredIdentity({ DATASET: "mnist", SEED: 42, BATCH_SIZE: undefined, LEASE_MS: 1000, NESTEROV: false }), { dataset: "mnist", seed: 42 }, "only identity variables, only set ones");
});
