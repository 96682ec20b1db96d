/**
 * Typed errors of jitcast. Every error carries an HTTP-like `code`, a SCREAMING_SNAKE `type`,
 * optional `data` and a `retryable` flag (as Moleculer's own errors do), and is registered with the
 * broker's error regenerator so it keeps its class when it crosses NATS.
 */
import { Errors } from 'moleculer';

/** Field-level validation failures, keyed by field name. */
export type FieldErrors = Record<string, string>;

/** Base class of every jitcast error. */
export class JitcastError extends Errors.MoleculerError {
  constructor(message: string, code: number, type: string, data?: unknown, retryable = false) {
    super(message, code, type, data);
    this.retryable = retryable;
  }
}

/** 400: input failed validation; `data.fields` names each bad field. */
export class ValidationFailedError extends JitcastError {
  constructor(message: string, fields?: FieldErrors) {
    super(message, 400, 'VALIDATION_FAILED', fields ? { fields } : undefined);
  }
}

/** 400: a body that is not well-formed JSON or XML. */
export class MalformedBodyError extends JitcastError {
  constructor(message: string) {
    super(message, 400, 'MALFORMED_BODY');
  }
}

/** 401: missing or wrong API key. */
export class UnauthorizedError extends JitcastError {
  constructor(message = 'a valid API key is required (Authorization: Bearer <key>)') {
    super(message, 401, 'UNAUTHORIZED');
  }
}

/** 403: a signed token or auth code that does not verify, or has expired. */
export class ForbiddenError extends JitcastError {
  constructor(message: string, type = 'FORBIDDEN') {
    super(message, 403, type);
  }
}

/** 404: no such event, stream or file. */
export class NotFoundError extends JitcastError {
  constructor(message: string, type = 'NOT_FOUND') {
    super(message, 404, type);
  }
}

/** 409: the request does not fit the current state (e.g. PATCH on an ended event). */
export class StateConflictError extends JitcastError {
  constructor(message: string, data?: unknown) {
    super(message, 409, 'STATE_CONFLICT', data);
  }
}

/** 413: body over the size limit. */
export class PayloadTooLargeError extends JitcastError {
  constructor(limit: number) {
    super(`request body is larger than ${limit} bytes`, 413, 'PAYLOAD_TOO_LARGE', { limit });
  }
}

/** 415: a Content-Type the API does not speak. */
export class UnsupportedMediaTypeError extends JitcastError {
  constructor(contentType: string) {
    super(`unsupported Content-Type '${contentType}': use application/json or application/xml`, 415, 'UNSUPPORTED_MEDIA_TYPE');
  }
}

/** 429: too many attempts (PIN guessing, API abuse). */
export class TooManyRequestsError extends JitcastError {
  constructor(message: string, retryAfterS?: number) {
    super(message, 429, 'TOO_MANY_REQUESTS', retryAfterS ? { retryAfterS } : undefined);
  }
}

/** 503: no healthy resource (port, encoder, voice server) is free right now. */
export class NoCapacityError extends JitcastError {
  constructor(message: string, data?: unknown) {
    super(message, 503, 'NO_CAPACITY', data, true);
  }
}

/** 503: content storage did not take a write the change depends on; nothing changed, try again. */
export class StorageUnavailableError extends JitcastError {
  constructor(message: string, data?: unknown) {
    super(message, 503, 'STORAGE_UNAVAILABLE', data, true);
  }
}

/** 500: a child process (ffmpeg) could not start. */
export class ProcessStartError extends JitcastError {
  constructor(message: string, data?: unknown) {
    super(message, 500, 'PROCESS_START_FAILED', data, true);
  }
}

/** 500: invalid configuration; the message names the key. */
export class ConfigError extends JitcastError {
  constructor(message: string) {
    super(message, 500, 'CONFIG_INVALID');
  }
}

const byType: Record<string, new (...args: any[]) => JitcastError> = {
  VALIDATION_FAILED: ValidationFailedError,
  MALFORMED_BODY: MalformedBodyError,
  UNAUTHORIZED: UnauthorizedError,
  FORBIDDEN: ForbiddenError,
  PASSWORD_REQUIRED: ForbiddenError,
  NOT_FOUND: NotFoundError,
  STATE_CONFLICT: StateConflictError,
  PAYLOAD_TOO_LARGE: PayloadTooLargeError,
  UNSUPPORTED_MEDIA_TYPE: UnsupportedMediaTypeError,
  TOO_MANY_REQUESTS: TooManyRequestsError,
  NO_CAPACITY: NoCapacityError,
  STORAGE_UNAVAILABLE: StorageUnavailableError,
  PROCESS_START_FAILED: ProcessStartError,
  CONFIG_INVALID: ConfigError,
};

/** Rebuilds jitcast errors that arrive over the transporter, so `instanceof` works across nodes. */
export class JitcastRegenerator extends Errors.Regenerator {
  override restoreCustomError(plainError: any, payload: Record<string, any>): Error {
    const Ctor = typeof plainError?.type === 'string' ? byType[plainError.type] : undefined;
    // Moleculer's own restore takes over when we return undefined.
    if (!Ctor) return super.restoreCustomError(plainError, payload);
    const err = Object.create(Ctor.prototype) as JitcastError;
    Object.assign(err, new JitcastError(plainError.message, plainError.code, plainError.type, plainError.data, plainError.retryable === true));
    err.name = Ctor.name;
    // `message` and `stack` are own but not enumerable on an Error: Object.assign leaves them out.
    err.message = String(plainError.message ?? '');
    if (typeof plainError.stack === 'string') err.stack = plainError.stack;
    return err;
  }
}

/** The message of anything thrown: an Error's message, else the value as text (for logs). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
