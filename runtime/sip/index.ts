/** Public API of the SIP stack: the UDP user agent server and its call object. */
export {
  ACCEPTED_BODIES,
  ALLOWED_METHODS,
  InboundCall,
  SipUserAgent,
  type InboundCallEvents,
  type InboundCallState,
  type InfoEvent,
  type SipUserAgentEvents,
  type SipUserAgentOptions,
  type SipUserAgentStats,
  type TerminationReason,
} from './user-agent.ts';
export { DEFAULT_TIMERS, type Clock, type Endpoint, type Logger, type TimerConfig } from './transactions.ts';
