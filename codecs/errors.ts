/** Errors of the pure codecs. `code` is a SCREAMING_SNAKE reason a caller can branch on. */
export class CodecError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
    this.name = new.target.name;
  }
}
