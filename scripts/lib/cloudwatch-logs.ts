/**
 * Reading a deployed run's logs from CloudWatch Logs (FilterLogEvents), for `make results` and
 * `make status --cloudwatch`. Credentials and region come from the SDK's default chain (AWS_PROFILE,
 * AWS_REGION, ...); `endpoint` points the client at a stand-in for tests.
 *
 * The ECS task definitions send each container's stdout and stderr to a log group per role:
 * <prefix>-parameter-server and <prefix>-worker (terraform: /ecs/distributed-ps-<env>-...).
 */
import { CloudWatchLogsClient, FilterLogEventsCommand } from "@aws-sdk/client-cloudwatch-logs";

export const DEFAULT_LOG_GROUP_PREFIX = "/ecs/distributed-ps-dev";

export interface LogEvent {
  timestamp: number;
  message: string;
  logStreamName: string;
}

export interface CloudWatchOptions {
  region?: string | undefined;
  /** A CloudWatch Logs-compatible endpoint (tests); unset for AWS. */
  endpoint?: string | undefined;
}

export function logsClient(o: CloudWatchOptions): CloudWatchLogsClient {
  return new CloudWatchLogsClient({
    ...(o.region ? { region: o.region } : {}),
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    maxAttempts: 3,
  });
}

/**
 * Every event of `logGroupName` matching `filterPattern` between the two times (epoch ms), oldest
 * first, following nextToken — at most `maxPages` pages, so a mistaken query ends.
 */
export async function filterLogEvents(
  client: CloudWatchLogsClient,
  q: { logGroupName: string; filterPattern?: string; startTime?: number; endTime?: number; maxPages?: number },
): Promise<LogEvent[]> {
  const events: LogEvent[] = [];
  let nextToken: string | undefined;
  const maxPages = q.maxPages ?? 200;
  for (let page = 0; page < maxPages; page++) {
    const r = await client.send(
      new FilterLogEventsCommand({
        logGroupName: q.logGroupName,
        filterPattern: q.filterPattern,
        startTime: q.startTime,
        endTime: q.endTime,
        nextToken,
      }),
    );
    for (const e of r.events ?? []) events.push({ timestamp: e.timestamp ?? 0, message: e.message ?? "", logStreamName: e.logStreamName ?? "" });
    // The API may answer an empty page with a token while it scans; an unchanged token ends it.
    if (r.nextToken === undefined || r.nextToken === nextToken) break;
    nextToken = r.nextToken;
  }
  return events.sort((a, b) => a.timestamp - b.timestamp);
}

/** "90m", "2h", "3d", "45s" → milliseconds. */
export function parseSince(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)$/.exec(text.trim());
  if (!m) throw new Error(`"${text}" is not a duration such as 30m, 2h or 1d`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
}
