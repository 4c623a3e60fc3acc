/**
 * When a run on ECS completes, the job stops costing money by itself: it sets the desired count of
 * the worker service, then of the server service, to zero. Otherwise ECS would restart finished
 * tasks in a loop (the old system's worker ids grew to 11 in a 4-worker run for this reason, and
 * its guide told users to scale the service down by hand). Active only when ECS_CLUSTER is set,
 * which the Terraform task definitions do; locally nothing is scaled.
 */
import { ECSClient, UpdateServiceCommand } from "@aws-sdk/client-ecs";
import type { Logger } from "@distributed-ps/common/log.ts";

export interface EcsServices {
  cluster: string;
  services: string[];
}

export async function scaleServicesToZero(target: EcsServices, log: Logger, client = new ECSClient({})): Promise<void> {
  for (const service of target.services) {
    await client.send(new UpdateServiceCommand({ cluster: target.cluster, service, desiredCount: 0 }));
    log.info(`ECS: set the desired count of ${service} in ${target.cluster} to 0`);
  }
}
