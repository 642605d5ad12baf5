import type { OutputContext } from '../context.js';
import type { Output } from '../output.js';

// Being built (issue 16); replaced by the real output.
export function createWebhookOutput(_ctx: OutputContext): Output {
  throw new Error('the webhook output is not built yet');
}
