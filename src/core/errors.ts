/** An error caused by the user's input (flag, file, dataset); the CLI prints its message without a stack. */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}
