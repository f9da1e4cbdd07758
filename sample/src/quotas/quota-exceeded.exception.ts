import { HttpException, HttpStatus } from '@nestjs/common';

/** HTTP 429 with a JSON body that says which limit was hit and, when known, when it resets. */
export class QuotaExceededException extends HttpException {
  constructor(userId: string, limit: number, resetsAt: Date | null = null) {
    super(
      {
        statusCode: HttpStatus.TOO_MANY_REQUESTS,
        error: 'QuotaExceeded',
        message: `User ${userId} has used all ${limit} requests of the current quota window.`,
        limit,
        resetsAt,
      },
      HttpStatus.TOO_MANY_REQUESTS,
    );
  }
}
