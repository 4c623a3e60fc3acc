/** A malformed tensor stream; the message says what was wrong. Maps to InvalidArgument. */
export class TensorStreamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TensorStreamError";
  }
}
