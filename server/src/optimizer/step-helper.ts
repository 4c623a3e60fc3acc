/**
 * A step helper thread (parallel-step.ts): for each update the server's thread posts, claims and
 * runs units of it until none are left. The arrays are views of shared memory, so the helper
 * writes the parameters and optimizer state in place.
 */
import { parentPort, workerData } from "node:worker_threads";
import { runUnits, type UpdateMessage } from "./parallel-step.ts";
import { fromWire } from "./step-job.ts";

const counters = (workerData as { counters: Int32Array }).counters;

parentPort!.on("message", (m: UpdateMessage) => {
  runUnits(m.jobs.map(fromWire), m.units, counters, m.base, true);
});
