import type { Server } from "node:http";
export declare function startWebServer(options?: {
  root?: string;
  host?: string;
  port?: number;
}): Promise<{ server: Server; url: string }>;
