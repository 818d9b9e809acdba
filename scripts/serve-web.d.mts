import type { Server } from "node:http";
export declare function startWebServer(options?: {
  root?: string;
  host?: string;
  port?: number;
  isolated?: boolean;
}): Promise<{ server: Server; url: string }>;
