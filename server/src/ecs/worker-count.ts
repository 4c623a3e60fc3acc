/**
 * Elastic workers. On ECS the number of workers is the desired count of the worker service, and
 * the user changes it there (`aws ecs update-service --desired-count N`, or `terraform apply -var
 * worker_count=N`), not on the parameter server; ECS does not tell the server. So the server polls
 * the service's desired count and resizes its membership and the sync barrier when it changes,
 * without a restart. The task role is granted ecs:DescribeServices on the worker service in
 * terraform/iam.tf.
 *
 * Failures to read the count (throttling, network, service missing) are logged and polling goes
 * on: a transient API problem must not stop training, which continues with the last known count.
 */
import { DescribeServicesCommand, ECSClient } from "@aws-sdk/client-ecs";
import type { Logger } from "@distributed-ps/common/log.ts";

export interface WorkerCountWatch {
  /** Stops polling (a call in flight is aborted); resolves once no poll is running or scheduled. */
  stop(): Promise<void>;
  /** Whether the next poll is waiting on its timer (never while a call is in flight: polls do not overlap). */
  readonly scheduled: boolean;
}

export interface WorkerCountWatchOptions {
  cluster: string;
  service: string;
  intervalMs: number;
  log: Logger;
  /** Called with the first value read and on every change after. */
  onCount: (desired: number) => void;
  /** Default: new ECSClient({}), destroyed on stop(). */
  client?: ECSClient;
}

export function watchWorkerServiceCount(o: WorkerCountWatchOptions): WorkerCountWatch {
  const { cluster, service, intervalMs, log, onCount } = o;
  const client = o.client ?? new ECSClient({});
  // Aborts a request in flight at stop(), so nothing of it arrives afterwards.
  const stopped = new AbortController();
  const byHand = `aws ecs describe-services --cluster ${cluster} --services ${service} --query 'services[0].desiredCount'`;
  let timer: NodeJS.Timeout | undefined;
  /** The poll running now, if one is. */
  let polling: Promise<void> | undefined;
  let stopping: Promise<void> | undefined;
  let reported: number | undefined;
  // The error last logged, so a persisting failure is logged once, not every interval.
  let failing: string | undefined;

  async function read(): Promise<number> {
    const out = await client.send(new DescribeServicesCommand({ cluster, services: [service] }), {
      abortSignal: stopped.signal,
    });
    // An unknown service is not an exception: ECS answers 200 with a failure entry instead.
    const failure = out.failures?.[0];
    if (failure) {
      throw new Error(`ECS answers ${failure.reason ?? "a failure"}${failure.detail ? ` (${failure.detail})` : ""} for ${failure.arn ?? service}`);
    }
    const svc = out.services?.[0];
    if (!svc) throw new Error("the answer lists no service");
    // A deleted (DRAINING, INACTIVE) service is still described for a while, with count 0: not a resize.
    if (svc.status !== undefined && svc.status !== "ACTIVE") throw new Error(`the service is ${svc.status}`);
    if (svc.desiredCount === undefined) throw new Error("the answer has no desiredCount");
    return svc.desiredCount;
  }

  async function poll(): Promise<void> {
    let count: number;
    try {
      count = await read();
    } catch (err) {
      if (stopped.signal.aborted) return;
      const what = describeError(err);
      if (what !== failing) {
        log.warn(
          `ECS: could not read the desired count of ${service} in ${cluster}: ${what}; ` +
            `keeping ${reported ?? "no count yet"}, retrying every ${intervalMs} ms (to check by hand: ${byHand})`,
        );
        failing = what;
      }
      return;
    }
    if (stopped.signal.aborted) return;
    if (failing !== undefined) {
      log.info(`ECS: reading the desired count of ${service} in ${cluster} works again`);
      failing = undefined;
    }
    if (count === reported) return;
    log.info(`ECS: desired count of ${service} in ${cluster} is ${count}${reported === undefined ? "" : ` (was ${reported})`}`);
    reported = count;
    try {
      onCount(count);
    } catch (err) {
      // A throw here would be an unhandled rejection in a timer; log it and keep watching.
      log.error(`ECS: handling the desired count ${count} of ${service} failed: ${describeError(err)}`);
    }
  }

  // The next poll is scheduled when the previous one has finished, so polls never overlap
  // (a slow or retrying call just delays the next one).
  async function loop(): Promise<void> {
    timer = undefined;
    polling = poll();
    await polling;
    polling = undefined;
    if (stopped.signal.aborted) return;
    timer = setTimeout(loop, intervalMs);
    timer.unref(); // the watch alone must not keep the server process alive
  }
  void loop();

  return {
    stop() {
      stopping ??= (async () => {
        stopped.abort();
        clearTimeout(timer);
        timer = undefined;
        await polling; // its call was aborted: it ends at once, reporting nothing
        if (o.client === undefined) client.destroy();
      })();
      return stopping;
    },
    get scheduled() {
      return timer !== undefined;
    },
  };
}

/** "ThrottlingException (HTTP 400): Rate exceeded"; the name is left out when it says nothing. */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  const name = err.name === "Error" ? "" : err.name;
  const head = [name, status === undefined ? "" : `(HTTP ${status})`].filter(Boolean).join(" ");
  return head ? `${head}: ${err.message}` : err.message;
}
