/**
 * A PushGradients answer read as it arrives (common/src/wire/tensor-message-reader.ts): its scalar
 * fields into a PushGradientsResponse, the parameters it carries (PushHeader.return_parameters)
 * from the socket buffers into a TensorCollector — one copy, where assembling the body and parsing
 * it allocated the whole model again on every step, and left it for the garbage collector: on a
 * small model's worker, a full collection every few hundred steps (external memory pressure).
 */
import { create } from "@bufbuild/protobuf";
import { PushGradientsResponseSchema, type PushGradientsResponse } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import type { TensorCollector } from "@distributed-ps/common/tensor-stream/tensor-collector.ts";
import { TensorMessageReader, type MessageLayout } from "@distributed-ps/common/wire/tensor-message-reader.ts";

const FIELDS = PushGradientsResponseSchema.field;

/** PushGradientsResponse: `repeated TensorChunk parameters` among scalars, no header. */
const PUSH_ANSWER: MessageLayout = { header: undefined, chunk: FIELDS.parameters.number, repeated: true };

export class PushAnswerReader {
  readonly #reader: TensorMessageReader;
  readonly #collector: TensorCollector;
  readonly #answer: PushGradientsResponse = create(PushGradientsResponseSchema);

  /** Decodes the parameters into `collector`; refuses an answer over `maxMessageBytes` as the generic client does. */
  constructor(collector: TensorCollector, maxMessageBytes: number) {
    this.#collector = collector;
    const answer = this.#answer;
    this.#reader = new TensorMessageReader(
      {
        // uint32 fields: protobuf keeps a varint's low 32 bits.
        scalar: (field, value) => {
          if (field === FIELDS.version.number) answer.version = value >>> 0;
          else if (field === FIELDS.staleness.number) answer.staleness = value >>> 0;
          else if (field === FIELDS.contributors.number) answer.contributors = value >>> 0;
          else if (field === FIELDS.parametersVersion.number) answer.parametersVersion = value >>> 0;
        },
        beginChunk: (framing, dataLength) => collector.beginChunk(framing, dataLength),
        writeData: (piece) => collector.writeData(piece),
        endChunk: () => collector.endChunk(),
        chunk: (framing, data, dataLength) => collector.addPieces(framing, data, dataLength),
      },
      maxMessageBytes,
      "push answer",
      PUSH_ANSWER,
    );
  }

  /** Takes the next bytes of the body; throws FramingError or TensorStreamError on a bad one. */
  push(bytes: Buffer): void {
    this.#reader.push(bytes);
  }

  /**
   * The body ended: checks it ended on a message boundary; returns the answer (its `parameters`
   * field left empty) and the tensors it carried, finished, if it carried any.
   */
  finish(): { answer: PushGradientsResponse; parameters: NamedTensor[] | undefined } {
    this.#reader.finish();
    // Every chunk begins or continues a tensor: none means the answer carried no parameters. The
    // tensors are counted as they came, as the generic path counts them.
    const count = this.#collector.tensors.length;
    return { answer: this.#answer, parameters: count === 0 ? undefined : this.#collector.finish(count) };
  }
}
