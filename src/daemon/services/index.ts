/**
 * The agent services the daemon runs, by name. Each entry builds one service
 * from its context; a service switched off is never built.
 */
import type { ServiceFactory, ServiceName } from "./service.ts";
import { createTasksService } from "./tasks/tasks-service.ts";
import { timersFromEnv } from "./tasks/settings.ts";

export const SERVICE_FACTORIES: Partial<Record<ServiceName, ServiceFactory>> = {
  tasks: (context) => createTasksService(context, { timers: timersFromEnv() }),
};
