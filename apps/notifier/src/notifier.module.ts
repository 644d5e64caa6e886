import { Module, type DynamicModule } from '@nestjs/common';
import { WebhooksModule, type RelayOptions } from '@libs/webhooks';

/**
 * The notifier role: relays the verdict outbox to the `webhook` queue and delivers it (signed, retried,
 * dead-lettered). It holds no model and no GPU; everything it does happens after a verdict is final.
 */
@Module({})
export class NotifierModule {
  static register(env: NodeJS.ProcessEnv = process.env, options: { relay?: RelayOptions } = {}): DynamicModule {
    return { module: NotifierModule, imports: [WebhooksModule.forNotifier(env, options)] };
  }
}
