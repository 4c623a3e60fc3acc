/**
 * Connect's HandlerContext for a hand-framed call (hand-framed-call.ts), made for what such a call
 * costs: what createHandlerContext builds eagerly for every call — three Headers objects, a deadline
 * controller and a controller linked to three signals — is here one AbortController, and Headers
 * made only when something reads them (an interceptor, an error's trailers). For a small model's
 * call, Connect's version was a measurable part of the server's time per round.
 *
 * Same meaning as Connect's: `signal` aborts when the client goes away before the answer is
 * complete, when the deadline passes (DEADLINE_EXCEEDED, Connect's words), or when the server shuts
 * down; `timeoutMs()` is the time left.
 */
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type ContextValues, type HandlerContext } from "@connectrpc/connect";

export class CallContext implements HandlerContext {
  readonly method: DescMethod;
  readonly service: DescService;
  readonly requestMethod = "POST";
  readonly protocolName = "grpc";
  readonly url: string;
  readonly values: ContextValues = createContextValues();
  readonly #req: Http2ServerRequest;
  readonly #abort = new AbortController();
  readonly #deadlineAt: number | undefined;
  readonly #timer: NodeJS.Timeout | undefined;
  readonly #shutdown: AbortSignal;
  readonly #onShutdown = () => this.#abort.abort(this.#shutdown.reason);
  #requestHeader: Headers | undefined;
  #responseHeader: Headers | undefined;
  #responseTrailer: Headers | undefined;

  constructor(method: DescMethod, req: Http2ServerRequest, res: Http2ServerResponse, timeoutMs: number | undefined, shutdown: AbortSignal) {
    this.method = method;
    this.service = method.parent;
    this.url = `${req.scheme}://${req.authority}${req.url}`;
    this.#req = req;
    this.#shutdown = shutdown;
    res.once("close", () => {
      if (!res.writableFinished) this.#abort.abort(new ConnectError(`${method.name}: the client cancelled`, Code.Canceled));
    });
    if (timeoutMs !== undefined) {
      this.#deadlineAt = Date.now() + timeoutMs;
      this.#timer = setTimeout(() => this.#abort.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), timeoutMs);
    }
    if (shutdown.aborted) this.#onShutdown();
    else shutdown.addEventListener("abort", this.#onShutdown, { once: true });
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  timeoutMs = (): number | undefined => (this.#deadlineAt === undefined ? undefined : this.#deadlineAt - Date.now());

  /** The request's headers without HTTP/2's pseudo-headers, as Connect's handlers see them. */
  get requestHeader(): Headers {
    if (this.#requestHeader === undefined) {
      const header = new Headers();
      for (const name in this.#req.headers) {
        const value = this.#req.headers[name];
        if (name.charCodeAt(0) === 58 /* ":" */ || value === undefined) continue;
        if (Array.isArray(value)) for (const v of value) header.append(name, v);
        else header.append(name, value);
      }
      this.#requestHeader = header;
    }
    return this.#requestHeader;
  }

  get responseHeader(): Headers {
    return (this.#responseHeader ??= new Headers());
  }

  get responseTrailer(): Headers {
    return (this.#responseTrailer ??= new Headers());
  }

  /** The response headers to send: `defaults`, then any that were set. */
  responseHeaders(defaults: Record<string, string>): Record<string, string> {
    return this.#responseHeader === undefined ? defaults : { ...defaults, ...Object.fromEntries(this.#responseHeader) };
  }

  /** The trailers to send: `defaults`, then any that were set (a status set by an error among them). */
  responseTrailers(defaults: Record<string, string>): Record<string, string> {
    return this.#responseTrailer === undefined ? defaults : { ...defaults, ...Object.fromEntries(this.#responseTrailer) };
  }

  /** The call is over: no timer, no listener on the server's shutdown signal. */
  close(): void {
    clearTimeout(this.#timer);
    this.#shutdown.removeEventListener("abort", this.#onShutdown);
  }
}
