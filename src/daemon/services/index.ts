/**
 * The agent services the daemon runs, by name. Each entry builds one service
 * from its context; a service switched off is never built.
 */
import type { ServiceFactory, ServiceName } from "./service.ts";
import { messagesService } from "./exchange/messages.ts";
import { filesService } from "./exchange/files.ts";
import { createPubsubService } from "./pubsub/service.ts";

import { createTasksService } from "./tasks/tasks-service.ts";
import { timersFromEnv } from "./tasks/settings.ts";


export const SERVICE_FACTORIES: Partial<Record<ServiceName, ServiceFactory>> = {
  messages: messagesService,
  files: filesService,
  pubsub: (context) => createPubsubService(context),
  tasks: (context) => createTasksService(context, { timers: timersFromEnv() }),
};
