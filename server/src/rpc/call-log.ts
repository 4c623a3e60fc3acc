/**
 * A line per RPC at LOG_LEVEL=debug — method, outcome, time, peer label — written by an interceptor,
 * so it covers every call the server answers, the hand-framed bulk streams included
 * (hand-framed-call.ts). At other levels it is not installed: nothing is spent on it.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "@distributed-ps/common/log.ts";

export function callLog(log: Logger): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const end = (err?: unknown) => {
      const outcome = err === undefined ? "OK" : `${Code[ConnectError.from(err).code]}: ${ConnectError.from(err).rawMessage}`;
      log.debug(`rpc ${req.method.name} ${outcome} in ${(performance.now() - started).toFixed(1)} ms`);
    };
    let res;
    try {
      res = await next(req);
    } catch (err) {
      end(err);
      throw err;
    }
    if (!res.stream) {
      end();
      return res;
    }
    // A streaming answer ends when its messages do.
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* messages;
        } catch (err) {
          end(err);
          throw err;
        }
        end();
      })(),
    };
  };
}
