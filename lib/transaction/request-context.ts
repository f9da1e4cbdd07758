import { CallContextSlot } from '../common/call-context.js';

/** What the module option `settings` is called with: the context of the call that begins a transaction. */
export interface SettingsContext {
  /**
   * The HTTP request being handled (Express's or Fastify's request object, after guards ran: `request.user` is
   * there), or undefined outside an HTTP request (a scheduled job, a queue consumer, bootstrap).
   */
  // The request's type is the app's (Express, Fastify, its own user type): the library cannot name it.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  request?: any;
}

/** The request the current call chain serves, set by TxLockModule's global interceptor. */
export const requestContext = new CallContextSlot<SettingsContext>('request-context');

/** The context of the current call: its HTTP request, if any. */
export function currentSettingsContext(): SettingsContext {
  return requestContext.getStore() ?? {};
}
