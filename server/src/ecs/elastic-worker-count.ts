/**
 * Elastic workers on ECS, from the server's side: the worker service's desired count is the run's
 * worker count, so `aws ecs update-service --desired-count` or `terraform apply -var
 * worker_count=…` resize the barrier of the running job (Terraform therefore leaves
 * TOTAL_WORKERS_EXPECTED out of an unsharded server's task definition: changing it would replace the
 * task). The first reading comes before the server listens, so the start quorum waits for the right
 * number of workers. A sharded run keeps its count (SetWorkerCount refuses it too).
 */
import type { Logger } from "@distributed-ps/common/log.ts";
import type { TrainingRun } from "../run/training-run.ts";
import { watchWorkerServiceCount } from "./worker-count.ts";

/** How long the first reading may take before the server starts with its configured count. */
const FIRST_READING_MS = 10_000;

export interface ElasticWorkerCount {
  /** The worker count to start with: the service's desired count, or the configured one. */
  readonly initial: number;
  /** From now on every change of the desired count resizes `run` (and the first reading applies). */
  follow(run: TrainingRun): void;
  stop(): void;
}

export interface ElasticWorkerCountOptions {
  /** Undefined when not on ECS (or sharded): then the configured count holds. */
  ecs: { cluster: string; service: string; pollMs: number } | undefined;
  configured: number;
  log: Logger;
}

export async function elasticWorkerCount(o: ElasticWorkerCountOptions): Promise<ElasticWorkerCount> {
  const { ecs, configured, log } = o;
  if (ecs === undefined) return { initial: configured, follow: () => {}, stop: () => {} };
  let apply: (desired: number) => void = () => {};
  const watch = watchWorkerServiceCount({ cluster: ecs.cluster, service: ecs.service, intervalMs: ecs.pollMs, log, onCount: (desired) => apply(desired) });
  const firstReading = await new Promise<number | undefined>((resolve) => {
    const fallback = setTimeout(() => resolve(undefined), FIRST_READING_MS);
    apply = (desired) => {
      clearTimeout(fallback);
      resolve(desired);
    };
  });
  if (firstReading === undefined) log.warn(`no desired count from ECS service ${ecs.service} yet; starting with ${configured} workers`);
  return {
    initial: Math.max(1, firstReading ?? configured),
    follow(run) {
      apply = (desired) => {
        if (desired !== run.membership.workerCount) run.resize(desired);
      };
      // A run resumed from a checkpoint has the count it had then; the service's count is the one wanted now.
      if (firstReading !== undefined) apply(firstReading);
    },
    stop: () => watch.stop(),
  };
}
