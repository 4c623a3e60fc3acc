/**
 * A PullParameters answer read as it arrives (common/src/wire/tensor-message-reader.ts), its tensors
 * decoded from the socket buffers into a TensorCollector, which checks them as it does whole chunks.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { PullHeaderSchema } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { FramingError, TensorMessageReader } from "@distributed-ps/common/wire/tensor-message-reader.ts";
import type { TensorCollector } from "@distributed-ps/common/tensor-stream/tensor-collector.ts";

export class PullResponseReader {
  readonly #reader: TensorMessageReader;
  #version: number | undefined;
  #tensorCount = 0;

  /** Decodes the tensors into `collector`; refuses messages over `maxMessageBytes` as the generic client does. */
  constructor(collector: TensorCollector, maxMessageBytes: number) {
    this.#reader = new TensorMessageReader(
      {
        header: (bytes) => {
          let header;
          try {
            header = fromBinary(PullHeaderSchema, bytes);
          } catch (err) {
            throw new FramingError(`malformed header: ${(err as Error).message}`);
          }
          this.#version = header.version;
          this.#tensorCount = header.tensorCount;
        },
        beginChunk: (framing, dataLength) => collector.beginChunk(framing, dataLength),
        writeData: (piece) => collector.writeData(piece),
        endChunk: () => collector.endChunk(),
        chunk: (framing, data, dataLength) => collector.addPieces(framing, data, dataLength),
      },
      maxMessageBytes,
      "pull answer",
    );
  }

  /** Takes the next bytes of the body; throws FramingError or TensorStreamError on a bad stream. */
  push(bytes: Buffer): void {
    this.#reader.push(bytes);
  }

  /** The body ended: checks it ended on a message boundary; returns the header's version and tensor count. */
  finish(): { version: number; tensorCount: number } {
    this.#reader.finish();
    return { version: this.#version!, tensorCount: this.#tensorCount };
  }
}
